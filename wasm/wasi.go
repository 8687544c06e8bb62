package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"strconv"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmproxy/wasmproxy/logging"
)

// WASI errno values used here (wasi_snapshot_preview1 errno).
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNoent   = 44
	errnoNosys   = 52
	errnoNotdir  = 20
	errnoNotsup  = 58
)

// maxRandomBytes is cpp-host's cap on one random_get.
const maxRandomBytes = 64 << 10

// rightFDWrite is __WASI_RIGHTS_FD_WRITE, the only right stdout and
// stderr report.
const rightFDWrite = 1 << 6

// monotonicBase anchors clock_time_get(MONOTONIC); Go's monotonic clock
// is only exposed as differences.
var monotonicBase = time.Now()

// wasiFunctions is the whole wasi_snapshot_preview1 surface, registered
// under both wasi_snapshot_preview1 and wasi_unstable, with cpp-host's
// behaviour (reference §1.8): stdout/stderr go to the plugin log, clocks,
// randomness and the configured environment work, and the file system,
// sockets and signals are absent (errno, never a trap), because new
// toolchains import more of WASI than they use and must still link.
func wasiFunctions() []hostFunc {
	fd := func(name string, params []api.ValueType, fn api.GoModuleFunc) hostFunc {
		return hostFunc{name, params, oneI32, fn}
	}
	// errno returns a function that always answers e.
	errno := func(e uint32) api.GoModuleFunc {
		return func(_ context.Context, _ api.Module, stack []uint64) { stack[0] = uint64(e) }
	}
	// stdio answers SUCCESS for fds 1 and 2 and BADF otherwise, for calls
	// that are harmless on a log stream (sync, advise, ...).
	stdio := func(_ context.Context, _ api.Module, stack []uint64) {
		if fd := uint32(stack[0]); fd == 1 || fd == 2 {
			stack[0] = errnoSuccess
			return
		}
		stack[0] = errnoBadf
	}
	p := func(types ...api.ValueType) []api.ValueType { return types }

	return []hostFunc{
		fd("args_get", ints(2), errno(errnoSuccess)),
		fd("args_sizes_get", ints(2), wasiArgsSizesGet),
		fd("environ_get", ints(2), wasiEnvironGet),
		fd("environ_sizes_get", ints(2), wasiEnvironSizesGet),
		fd("clock_res_get", ints(2), wasiClockResGet),
		fd("clock_time_get", p(i32, i64, i32), wasiClockTimeGet),
		fd("fd_advise", p(i32, i64, i64, i32), stdio),
		fd("fd_allocate", p(i32, i64, i64), stdio),
		fd("fd_close", ints(1), wasiLogged("fd_close", errnoSuccess)),
		fd("fd_datasync", ints(1), stdio),
		fd("fd_fdstat_get", ints(2), wasiFdstatGet),
		fd("fd_fdstat_set_flags", ints(2), errno(errnoNosys)),
		fd("fd_fdstat_set_rights", p(i32, i64, i64), stdio),
		fd("fd_filestat_get", ints(2), errno(errnoBadf)),
		fd("fd_filestat_set_size", p(i32, i64), stdio),
		fd("fd_filestat_set_times", p(i32, i64, i64, i32), stdio),
		fd("fd_pread", p(i32, i32, i32, i64, i32), errno(errnoNosys)),
		fd("fd_prestat_get", ints(2), errno(errnoBadf)),
		fd("fd_prestat_dir_name", ints(3), errno(errnoNosys)),
		fd("fd_pwrite", p(i32, i32, i32, i64, i32), wasiFdPwrite),
		fd("fd_read", ints(4), errno(errnoNosys)),
		fd("fd_readdir", p(i32, i32, i32, i64, i32), wasiFdReaddir),
		fd("fd_renumber", ints(2), wasiFdRenumber),
		fd("fd_seek", p(i32, i64, i32, i32), wasiLogged("fd_seek", errnoSuccess)),
		fd("fd_sync", ints(1), stdio),
		fd("fd_tell", ints(2), wasiFdTell),
		fd("fd_write", ints(4), wasiFdWrite),
		fd("path_create_directory", ints(3), errno(errnoNotsup)),
		fd("path_filestat_get", ints(5), errno(errnoNotsup)),
		fd("path_filestat_set_times", p(i32, i32, i32, i32, i64, i64, i32), errno(errnoNotsup)),
		fd("path_link", ints(7), errno(errnoNotsup)),
		fd("path_open", p(i32, i32, i32, i32, i32, i64, i64, i32, i32), errno(errnoNoent)),
		fd("path_readlink", ints(6), wasiZeroOut(5, errnoNotsup)),
		fd("path_remove_directory", ints(3), errno(errnoNotsup)),
		fd("path_rename", ints(6), errno(errnoNotsup)),
		fd("path_symlink", ints(5), errno(errnoNotsup)),
		fd("path_unlink_file", ints(3), errno(errnoNotsup)),
		fd("poll_oneoff", ints(4), wasiPollOneoff),
		{"proc_exit", ints(1), nil, wasiProcExit},
		fd("proc_raise", ints(1), errno(errnoNosys)),
		fd("random_get", ints(2), wasiRandomGet),
		fd("sched_yield", nil, errno(errnoSuccess)),
		fd("sock_accept", ints(3), errno(errnoNotsup)),
		fd("sock_recv", ints(6), wasiZeroOut2(4, 5, errnoNotsup)),
		fd("sock_send", ints(5), wasiZeroOut(4, errnoNotsup)),
		fd("sock_shutdown", ints(2), errno(errnoNotsup)),
	}
}

// wasiLog writes a WASI-originated line to the plugin log. WASI calls are
// allowed during start-up, so this does not use enter.
func wasiLog(ctx context.Context, level slog.Level, msg []byte) {
	if inst := instanceOf(ctx); inst != nil {
		inst.plugin.logGuest(level, msg)
	}
}

// wasiLogged logs that an unsupported call was made and answers e
// (cpp-host logs fd_close and fd_seek and still returns SUCCESS).
func wasiLogged(name string, e uint32) api.GoModuleFunc {
	msg := []byte("wasi " + name + " is not supported")
	return func(ctx context.Context, _ api.Module, stack []uint64) {
		wasiLog(ctx, logging.LevelError, msg)
		stack[0] = uint64(e)
	}
}

// wasiZeroOut writes 0 to the u32 out-parameter at stack[out] (when it is
// in memory) and answers e.
func wasiZeroOut(out int, e uint32) api.GoModuleFunc {
	return func(_ context.Context, m api.Module, stack []uint64) {
		m.Memory().WriteUint32Le(uint32(stack[out]), 0)
		stack[0] = uint64(e)
	}
}

func wasiZeroOut2(out1, out2 int, e uint32) api.GoModuleFunc {
	return func(_ context.Context, m api.Module, stack []uint64) {
		m.Memory().WriteUint32Le(uint32(stack[out1]), 0)
		m.Memory().WriteUint16Le(uint32(stack[out2]), 0)
		stack[0] = uint64(e)
	}
}

// args_sizes_get(argc_out, buf_size_out): no arguments.
func wasiArgsSizesGet(_ context.Context, m api.Module, stack []uint64) {
	mem := m.Memory()
	if !mem.WriteUint32Le(uint32(stack[0]), 0) || !mem.WriteUint32Le(uint32(stack[1]), 0) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// environ_sizes_get(count_out, buf_size_out): the plugin's
// vm_config.environment_variables as "KEY=VALUE\0" entries.
func wasiEnvironSizesGet(ctx context.Context, m api.Module, stack []uint64) {
	env := instanceOf(ctx).vm.environ
	size := 0
	for _, e := range env {
		size += len(e) + 1
	}
	mem := m.Memory()
	if !mem.WriteUint32Le(uint32(stack[0]), uint32(len(env))) || !mem.WriteUint32Le(uint32(stack[1]), uint32(size)) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// environ_get(ptrs, buf): pointers into buf, then the NUL-terminated
// entries.
func wasiEnvironGet(ctx context.Context, m api.Module, stack []uint64) {
	env := instanceOf(ctx).vm.environ
	mem := m.Memory()
	ptrs, buf := uint32(stack[0]), uint32(stack[1])
	for i, e := range env {
		if !mem.WriteUint32Le(ptrs+uint32(i)*4, buf) || !mem.WriteString(buf, e) || !mem.WriteByte(buf+uint32(len(e)), 0) {
			stack[0] = errnoFault
			return
		}
		buf += uint32(len(e)) + 1
	}
	stack[0] = errnoSuccess
}

// clock_res_get(id, out): 1 ns for realtime and monotonic.
func wasiClockResGet(_ context.Context, m api.Module, stack []uint64) {
	if id := uint32(stack[0]); id > 1 {
		stack[0] = errnoNotsup
		return
	}
	if !m.Memory().WriteUint64Le(uint32(stack[1]), 1) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// clock_time_get(id, precision, out): realtime (Unix ns) and monotonic;
// the CPU-time clocks are NOTSUP.
func wasiClockTimeGet(_ context.Context, m api.Module, stack []uint64) {
	var ns int64
	switch uint32(stack[0]) {
	case 0:
		ns = time.Now().UnixNano()
	case 1:
		ns = int64(time.Since(monotonicBase)) + 1 // never 0
	default:
		stack[0] = errnoNotsup
		return
	}
	if !m.Memory().WriteUint64Le(uint32(stack[2]), uint64(ns)) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// fd_fdstat_get(fd, out): stdout and stderr are write-only character
// streams (a zeroed fdstat with FD_WRITE rights); other fds do not exist.
func wasiFdstatGet(_ context.Context, m api.Module, stack []uint64) {
	fd, out := uint32(stack[0]), uint32(stack[1])
	if fd != 1 && fd != 2 {
		stack[0] = errnoBadf
		return
	}
	var stat [24]byte
	stat[8] = rightFDWrite // fs_rights_base, u64 LE at offset 8
	if !m.Memory().Write(out, stat[:]) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// writeLog gathers an iovec list written to fd 1 (logged at info) or
// fd 2 (error) into the instance's line buffer for that stream. Complete
// lines are logged one per line, without the newline; a partial line
// waits for the rest or for the end of the guest call (flushStdio).
// cpp-host logs one line per call instead, which turns the Go runtime's
// panic output (written in dozens of fragments) into dozens of lines.
func writeLog(ctx context.Context, m api.Module, fd, iovs, iovsLen, nwrittenPtr uint32) uint32 {
	if fd != 1 && fd != 2 {
		return errnoBadf
	}
	inst := instanceOf(ctx)
	mem := m.Memory()
	buf := &inst.stdio[fd-1]
	n := 0
	for i := uint32(0); i < iovsLen; i++ {
		ptr, ok1 := mem.ReadUint32Le(iovs + i*8)
		size, ok2 := mem.ReadUint32Le(iovs + i*8 + 4)
		if !ok1 || !ok2 {
			return errnoFault
		}
		data, ok := readGuest(m, ptr, size)
		if !ok {
			return errnoFault
		}
		*buf = append(*buf, data...)
		n += len(data)
	}
	if !mem.WriteUint32Le(nwrittenPtr, uint32(n)) {
		return errnoFault
	}
	level := stdioLevels[fd-1]
	for {
		i := bytes.IndexByte(*buf, '\n')
		if i < 0 {
			break
		}
		if fd == 2 {
			inst.noteStderr((*buf)[:i])
		}
		inst.plugin.logGuest(level, (*buf)[:i])
		rest := copy(*buf, (*buf)[i+1:])
		*buf = (*buf)[:rest]
	}
	return errnoSuccess
}

// stdioLevels are the log levels of fd 1 and fd 2.
var stdioLevels = [2]slog.Level{logging.LevelInfo, logging.LevelError}

// flushStdio logs what the guest wrote to stdout/stderr without a final
// newline, once its call is over.
func (inst *instance) flushStdio() {
	for i := range inst.stdio {
		if len(inst.stdio[i]) > 0 {
			inst.plugin.logGuest(stdioLevels[i], inst.stdio[i])
			inst.stdio[i] = inst.stdio[i][:0]
		}
	}
}

// fd_write(fd, iovs, iovs_len, nwritten_out).
func wasiFdWrite(ctx context.Context, m api.Module, stack []uint64) {
	stack[0] = uint64(writeLog(ctx, m, uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])))
}

// fd_pwrite(fd, iovs, iovs_len, offset, nwritten_out): like fd_write on
// the log streams, the offset is meaningless there.
func wasiFdPwrite(ctx context.Context, m api.Module, stack []uint64) {
	stack[0] = uint64(writeLog(ctx, m, uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[4])))
}

// fd_readdir(fd, buf, buf_len, cookie, bufused_out): no directories.
func wasiFdReaddir(_ context.Context, m api.Module, stack []uint64) {
	m.Memory().WriteUint32Le(uint32(stack[4]), 0)
	stack[0] = errnoNotdir
}

// fd_renumber(from, to): the standard streams cannot be renumbered; no
// other fd exists.
func wasiFdRenumber(_ context.Context, _ api.Module, stack []uint64) {
	if uint32(stack[0]) <= 2 && uint32(stack[1]) <= 2 {
		stack[0] = errnoNotsup
		return
	}
	stack[0] = errnoBadf
}

// fd_tell(fd, out): the log streams are always at offset 0.
func wasiFdTell(_ context.Context, m api.Module, stack []uint64) {
	if fd := uint32(stack[0]); fd != 1 && fd != 2 {
		stack[0] = errnoBadf
		return
	}
	if !m.Memory().WriteUint64Le(uint32(stack[1]), 0) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// poll_oneoff(in, out, nsubscriptions, nevents_out) writes 0 events and
// succeeds: Go's runtime calls it to sleep (also inside its allocator)
// and throws on any error.
func wasiPollOneoff(_ context.Context, m api.Module, stack []uint64) {
	if !m.Memory().WriteUint32Le(uint32(stack[3]), 0) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// proc_exit(code) only logs, as cpp-host does: a command module's _start
// may end with proc_exit(0), and the instance stays usable.
func wasiProcExit(ctx context.Context, _ api.Module, stack []uint64) {
	wasiLog(ctx, logging.LevelError, []byte("wasi proc_exit("+strconv.Itoa(int(int32(stack[0])))+")"))
}

// random_get(buf, len): crypto/rand straight into guest memory; more than
// 64 KiB at once is INVAL, cpp-host's limit.
func wasiRandomGet(_ context.Context, m api.Module, stack []uint64) {
	ptr, size := uint32(stack[0]), uint32(stack[1])
	if size > maxRandomBytes {
		stack[0] = errnoInval
		return
	}
	buf, ok := m.Memory().Read(ptr, size)
	if !ok {
		stack[0] = errnoFault
		return
	}
	if _, err := rand.Read(buf); err != nil {
		stack[0] = errnoInval
		return
	}
	stack[0] = errnoSuccess
}
