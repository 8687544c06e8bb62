package wasm

import (
	"context"
	"log/slog"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/logging"
)

// guestLevels maps proxy_log_level_t (0 trace … 5 critical) to the
// logging package's levels.
var guestLevels = [...]slog.Level{
	logging.LevelTrace, logging.LevelDebug, logging.LevelInfo,
	logging.LevelWarn, logging.LevelError, logging.LevelCritical,
}

// logGuest writes one plugin log line under component "wasm" in Envoy's
// format, "wasm log <name> <root_id> <vm_id>: <msg>". The level check
// comes first so a disabled level costs no string building.
func (p *Plugin) logGuest(level slog.Level, msg []byte) {
	log := p.host.log
	if !log.Enabled(context.Background(), level) {
		return
	}
	log.Log(context.Background(), level, p.logPrefix+string(msg))
}

// proxy_log(level, msg_ptr, msg_len) -> status. Allowed during start-up.
func proxyLog(ctx context.Context, m api.Module, stack []uint64) {
	inst := instanceOf(ctx)
	level := api.DecodeU32(stack[0])
	msg, ok := readGuest(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	switch {
	case !ok:
		setStatus(stack, statusInvalidMemoryAccess)
	case level >= uint32(len(guestLevels)):
		setStatus(stack, statusBadArgument)
	default:
		inst.plugin.logGuest(guestLevels[level], msg)
		setStatus(stack, statusOK)
	}
}

// proxy_get_log_level(out_level) -> status: the "wasm" logger's current
// level as 0-5, or 6 when it is off, as Envoy reports spdlog's level.
func proxyGetLogLevel(ctx context.Context, m api.Module, stack []uint64) {
	inst := enter(ctx, "proxy_get_log_level")
	level := uint32(len(guestLevels))
	log := inst.plugin.host.log
	for i, l := range guestLevels {
		if log.Enabled(ctx, l) {
			level = uint32(i)
			break
		}
	}
	setStatus(stack, putU32(m, api.DecodeU32(stack[0]), level))
}

func logFunctions() []hostFunc {
	return []hostFunc{
		{"proxy_log", ints(3), oneI32, proxyLog},
		{"proxy_get_log_level", ints(1), oneI32, proxyGetLogLevel},
	}
}
