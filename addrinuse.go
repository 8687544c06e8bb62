package wasmproxy

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/proxy"
)

// AddrInUseError is an address Start or Reload could not bind because
// another socket holds it. Its text names the address and what sets it
// (the config field and file, or the command-line flag), so the operator
// knows what to change without reading the config.
type AddrInUseError struct {
	What    string // `listener "NAME"` or "admin"
	Address string // as configured
	// Field is the config field that sets the address, in ConfigPath
	// ("" for a bootstrap given as a model).
	Field, ConfigPath string
	// Flag, when set, is the command-line flag that sets the address
	// instead of a config line (`run --plugin`'s --listen and --admin):
	// the command fills it in, as only it knows.
	Flag string
	Err  error // the net.Listen error
}

func (e *AddrInUseError) Error() string {
	change := e.Field
	switch {
	case e.Flag != "":
		change = e.Flag
	case e.ConfigPath != "":
		change += " in " + e.ConfigPath
	}
	return fmt.Sprintf("%s: address %s is already in use (another process, or another listener, is bound to it): stop that, or change %s [%v]",
		e.What, e.Address, change, e.Err)
}

func (e *AddrInUseError) Unwrap() error { return e.Err }

// IsAdmin reports whether the admin server's address is the taken one.
func (e *AddrInUseError) IsAdmin() bool { return e.What == "admin" }

// explainAddrInUse turns a bind error for an address in use into an
// AddrInUseError naming where cfg sets it; other errors pass unchanged.
func explainAddrInUse(err error, cfg *config.Bootstrap, configPath string) error {
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	var be *proxy.BindError
	if !errors.As(err, &be) {
		return err
	}
	e := &AddrInUseError{What: fmt.Sprintf("listener %q", be.Listener), Address: be.Address, ConfigPath: configPath, Err: be.Err}
	e.Field = "the listener's address.socket_address.port_value"
	if cfg != nil {
		for i, l := range cfg.Listeners {
			if l.Name == be.Listener {
				e.Field = fmt.Sprintf("static_resources.listeners[%d].address.socket_address.port_value", i)
				break
			}
		}
	}
	return e
}
