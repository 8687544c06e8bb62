package lua

import (
	"fmt"
	"os"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	luav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	glua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wasmproxy/wasmproxy/config"
)

// Config is the filter's Lua message.
type Config struct {
	Default     *Script            `json:"default_source_code,omitempty"`
	SourceCodes map[string]*Script `json:"source_codes,omitempty"`
	StatPrefix  string             `json:"stat_prefix,omitempty"`
	// FilterContext is filter_context (handle:filterContext()) for a
	// stream whose most specific LuaPerRoute sets none.
	FilterContext map[string]any `json:"filter_context,omitempty"`
}

// PerRoute is LuaPerRoute: Disabled, or the script to run instead of
// the default one (a named source code, or its own).
type PerRoute struct {
	Disabled bool    `json:"disabled,omitempty"`
	Name     string  `json:"name,omitempty"`
	Script   *Script `json:"source_code,omitempty"`
	// FilterContext is filter_context; non-nil (empty too) when set, and
	// then it replaces the filter's.
	FilterContext map[string]any `json:"filter_context,omitempty"`
}

// Script is one compiled source: states that ran it are pooled (a
// state runs one stream at a time; its globals persist between
// streams, as in Envoy's per-worker Lua state).
type Script struct {
	Source string `json:"source"`

	proto *glua.FunctionProto
	pool  sync.Pool // *state
}

// MarshalJSON shows the source's size, not the code (it may be long).
func (s *Script) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`{"bytes":%d}`, len(s.Source))), nil
}

func compile(src, name, path string) (*Script, error) {
	chunk, err := parse.Parse(strings.NewReader(src), name)
	if err != nil {
		return nil, config.FieldError(path, "the Lua code does not parse: %s", oneLine(err.Error()))
	}
	fp, err := glua.Compile(chunk, name)
	if err != nil {
		return nil, config.FieldError(path, "the Lua code does not compile: %s", oneLine(err.Error()))
	}
	return &Script{Source: src, proto: fp}, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// source reads a DataSource (a file is read now, so a missing one is a
// config error naming the field).
func source(pb *corev3.DataSource, path string) (string, error) {
	switch s := pb.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return s.InlineString, nil
	case *corev3.DataSource_InlineBytes:
		return string(s.InlineBytes), nil
	case *corev3.DataSource_Filename:
		b, err := os.ReadFile(s.Filename)
		if err != nil {
			return "", config.FieldError(config.JoinPath(path, "filename"), "%v", err)
		}
		return string(b), nil
	}
	return "", config.FieldError(path, "missing filename, inline_bytes or inline_string")
}

// checkFields refuses any field set on msg that is not in supported.
func checkFields(msg proto.Message, path string, supported ...protoreflect.Name) error {
	ok := map[protoreflect.Name]bool{}
	for _, n := range supported {
		ok[n] = true
	}
	var err error
	msg.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !ok[fd.Name()] {
			err = config.NotSupportedError(config.JoinPath(path, string(fd.Name())), "")
			return false
		}
		return true
	})
	return err
}

func parseConfig(msg proto.Message, path string) (any, error) {
	pb, _ := msg.(*luav3.Lua)
	if pb == nil {
		return nil, config.FieldError(path, "missing: lua needs a typed_config with default_source_code")
	}
	if err := checkFields(pb, path, "inline_code", "default_source_code", "source_codes", "stat_prefix", "filter_context"); err != nil {
		return nil, err
	}
	c := &Config{StatPrefix: pb.GetStatPrefix()}
	if fc := pb.GetFilterContext(); fc != nil {
		c.FilterContext = fc.AsMap()
	}
	var err error
	switch {
	case pb.GetInlineCode() != "" && pb.GetDefaultSourceCode() != nil:
		return nil, config.FieldError(path, "set one of inline_code (deprecated) and default_source_code")
	case pb.GetInlineCode() != "":
		if c.Default, err = compile(pb.GetInlineCode(), "inline_code", config.JoinPath(path, "inline_code")); err != nil {
			return nil, err
		}
	case pb.GetDefaultSourceCode() != nil:
		p := config.JoinPath(path, "default_source_code")
		src, err := source(pb.GetDefaultSourceCode(), p)
		if err != nil {
			return nil, err
		}
		if c.Default, err = compile(src, "default_source_code", p); err != nil {
			return nil, err
		}
	}
	for name, ds := range pb.GetSourceCodes() {
		p := fmt.Sprintf("%s[%q]", config.JoinPath(path, "source_codes"), name)
		src, err := source(ds, p)
		if err != nil {
			return nil, err
		}
		sc, err := compile(src, name, p)
		if err != nil {
			return nil, err
		}
		if c.SourceCodes == nil {
			c.SourceCodes = map[string]*Script{}
		}
		c.SourceCodes[name] = sc
	}
	return c, nil
}

func parsePerRoute(msg proto.Message, path string) (any, error) {
	pb, _ := msg.(*luav3.LuaPerRoute)
	if pb == nil {
		return nil, config.FieldError(path, "missing: LuaPerRoute needs disabled, name or source_code")
	}
	if err := checkFields(pb, path, "disabled", "name", "source_code", "filter_context"); err != nil {
		return nil, err
	}
	pr := &PerRoute{Disabled: pb.GetDisabled(), Name: pb.GetName()}
	if fc := pb.GetFilterContext(); fc != nil {
		pr.FilterContext = fc.AsMap()
	}
	if ds := pb.GetSourceCode(); ds != nil {
		p := config.JoinPath(path, "source_code")
		src, err := source(ds, p)
		if err != nil {
			return nil, err
		}
		if pr.Script, err = compile(src, "source_code", p); err != nil {
			return nil, err
		}
	}
	if !pr.Disabled && pr.Name == "" && pr.Script == nil && pr.FilterContext == nil {
		return nil, config.FieldError(path, "missing: LuaPerRoute needs disabled, name, source_code or filter_context")
	}
	return pr, nil
}
