package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decodeNode decodes a YAML node into out (a pointer) strictly: unknown
// keys are errors, and every error names the line of the value at fault,
// also for values that fail their own UnmarshalText (which yaml.v3 reports
// without a line).
func decodeNode(n *yaml.Node, out reflect.Value, path string) error {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return decodeNode(n.Content[0], out, path)
	}
	v := out.Elem()
	switch {
	case v.Kind() == reflect.Struct && n.Kind == yaml.MappingNode && !isTextType(out):
		fields := make(map[string]int)
		for i := range v.NumField() {
			tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if tag != "" && tag != "-" {
				fields[tag] = i
			}
		}
		seen := make(map[string]bool)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			idx, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("line %d: unknown key %q in %s", k.Line, k.Value, describe(v.Type()))
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: key %q given twice", k.Line, k.Value)
			}
			seen[k.Value] = true
			if err := decodeNode(val, v.Field(idx).Addr(), join(path, k.Value)); err != nil {
				return err
			}
		}
		if ls, ok := out.Interface().(interface{ setLines(*yaml.Node) }); ok {
			ls.setLines(n) // for Validate's messages
		}
		return nil
	case v.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeNode(item, s.Index(i).Addr(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		if done, err := decodeAddress(n, out, path); done {
			return err
		}
	}
	if err := n.Decode(out.Interface()); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		if l, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(l, "line ") {
			msg = rest
		}
		return fmt.Errorf("line %d: %s: %s", n.Line, path, msg)
	}
	return nil
}

// decodeAddress decodes the netip types the configuration holds, as the
// flags read them (an IP:PORT without its port takes the default port)
// and with the flags' messages rather than net/netip's; done is false for
// other types.
func decodeAddress(n *yaml.Node, out reflect.Value, path string) (done bool, err error) {
	switch p := out.Interface().(type) {
	case *CIDRs:
		*p = CIDRs{n.Value} // one prefix; a list is a sequence
	case *IPs:
		*p = IPs{n.Value} // one address; a list is a sequence
	case *netip.Prefix:
		v, err := netip.ParsePrefix(n.Value)
		if err != nil {
			return true, fmt.Errorf("line %d: %s: %q: want an address with prefix, e.g. 10.200.1.1/16", n.Line, path, n.Value)
		}
		*p = v
	case *netip.AddrPort:
		port := uint16(DefaultPort)
		if strings.HasPrefix(path, "gossip.") {
			port = DefaultGossipPort
		}
		v, err := ParseAddrPort(n.Value, port)
		if err != nil {
			return true, fmt.Errorf("line %d: %s: %v", n.Line, path, err)
		}
		*p = v
	case *netip.Addr:
		v, err := netip.ParseAddr(n.Value)
		if err != nil {
			return true, fmt.Errorf("line %d: %s: %q: want an IP address, e.g. 10.200.1.1", n.Line, path, n.Value)
		}
		*p = v
	default:
		return false, nil
	}
	return true, nil
}

func isTextType(p reflect.Value) bool {
	_, ok := p.Interface().(interface{ UnmarshalText([]byte) error })
	return ok
}

func describe(t reflect.Type) string {
	if t.Name() == "Config" {
		return "the configuration"
	}
	return strings.ToLower(t.Name())
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
