package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
	"gopkg.in/yaml.v3"
)

// Load reads the configuration: the defaults (Default), then the YAML file at
// path (skipped when path is empty), then every URVA_* variable in environ
// ("NAME=value" entries, as os.Environ returns them) that names a known key.
//
// A key in the file that the configuration does not have is an error naming
// the key. URVA_* variables that name no key are ignored, since other tools
// share the prefix. Durations are Go durations ("2ms", "12h"). A list key
// takes a YAML list or, as the environment must give it, one comma-separated
// string (URVA_TURN_EXTERNAL_URLS=turn:a:3478,stun:b). Load does not
// validate: call Validate.
func Load(path string, environ []string) (*Config, error) {
	k := koanf.New(".")
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := k.Load(rawbytes.Provider(b), yamlParser{}); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
		if err := checkKeys(k); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if over := envOverrides(environ); len(over) > 0 {
		if err := k.Load(confmap.Provider(over, "."), nil); err != nil {
			return nil, fmt.Errorf("config: environment: %w", err)
		}
	}

	cfg := Default()
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.ComposeDecodeHookFunc(durationHook, listHook, templatesHook),
		WeaklyTypedInput: true, // "256" from the environment is an int
		TagName:          "koanf",
		Result:           cfg,
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := dec.Decode(k.Raw()); err != nil {
		return nil, fmt.Errorf("config: %s", strings.Join(decodeProblems(err), "; "))
	}
	return cfg, nil
}

// decodeProblems renders the decoder's errors as "key: problem" lines.
func decodeProblems(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, decodeProblems(e)...)
		}
		return out
	}
	de, ok := err.(*mapstructure.DecodeError)
	if !ok {
		if inner := errors.Unwrap(err); inner != nil {
			return decodeProblems(inner)
		}
		return []string{err.Error()}
	}
	var pe *mapstructure.ParseError
	if errors.As(de, &pe) {
		return []string{fmt.Sprintf("%s: %q is not a valid %s", de.Name(), fmt.Sprint(pe.Value), pe.Expected.Type())}
	}
	return []string{fmt.Sprintf("%s: %v", de.Name(), de.Unwrap())}
}

// Keys returns every configuration key, e.g. "http.addr", in declaration order.
func Keys() []string {
	return slices.Clone(schema().keys)
}

// EnvName returns the environment variable that overrides key:
// EnvName("http.addr") == "URVA_HTTP_ADDR".
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

type keySchema struct {
	keys     []string          // leaf keys in declaration order
	leaves   map[string]bool   // leaf key -> true
	sections map[string]bool   // section key -> true
	env      map[string]string // env name -> leaf key
}

var schema = sync.OnceValue(func() *keySchema {
	s := &keySchema{
		leaves:   map[string]bool{},
		sections: map[string]bool{},
		env:      map[string]string{},
	}
	walkKeys(reflect.TypeFor[Config](), "", s)
	return s
})

var durationType = reflect.TypeFor[time.Duration]()

func walkKeys(t reflect.Type, prefix string, s *keySchema) {
	for f := range t.Fields() {
		name := f.Tag.Get("koanf")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := prefix + name
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			s.sections[key] = true
			walkKeys(f.Type, key+".", s)
			continue
		}
		s.keys = append(s.keys, key)
		s.leaves[key] = true
		env := EnvName(key)
		if other, dup := s.env[env]; dup {
			panic(fmt.Sprintf("config: keys %q and %q share the variable %s", other, key, env))
		}
		s.env[env] = key
	}
}

// checkKeys reports keys in k that the configuration does not have. An empty
// section (every key commented out) is fine.
func checkKeys(k *koanf.Koanf) error {
	s := schema()
	var unknown []string
	for key, v := range k.All() {
		if s.leaves[key] {
			continue
		}
		if s.sections[key] {
			if m, ok := v.(map[string]any); v == nil || ok && len(m) == 0 {
				continue
			}
			unknown = append(unknown, fmt.Sprintf("%q (a section: give its keys, e.g. %s)", key, firstKey(s.keys, key)))
			continue
		}
		unknown = append(unknown, fmt.Sprintf("%q", key))
	}
	switch len(unknown) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("unknown key %s (the keys are listed in docs/configuration.md)", unknown[0])
	}
	sort.Strings(unknown)
	return fmt.Errorf("unknown keys %s (the keys are listed in docs/configuration.md)", strings.Join(unknown, ", "))
}

func firstKey(keys []string, section string) string {
	for _, k := range keys {
		if strings.HasPrefix(k, section+".") {
			return k
		}
	}
	return section + ".…"
}

// envOverrides maps known URVA_* variables to their keys. A later entry for the
// same variable wins, as in a shell.
func envOverrides(environ []string) map[string]any {
	s := schema()
	over := map[string]any{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		if key, known := s.env[name]; known {
			over[key] = value
		}
	}
	return over
}

// durationHook reads durations only from Go duration strings, so that a bare
// number (which would silently mean nanoseconds) is an error.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	str, ok := data.(string)
	if !ok {
		if from == durationType {
			return data, nil
		}
		return nil, fmt.Errorf("%v is not a duration: write a Go duration such as \"2ms\", \"30s\" or \"12h\"", data)
	}
	d, err := time.ParseDuration(strings.TrimSpace(str))
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration: write a Go duration such as \"2ms\", \"30s\" or \"12h\"", str)
	}
	return d, nil
}

var stringsType = reflect.TypeFor[[]string]()

// listHook reads a string list from one comma-separated string (how the
// environment gives it) as well as from a YAML list. Items are trimmed and
// empty ones dropped, so an empty variable sets an empty list.
func listHook(from, to reflect.Type, data any) (any, error) {
	str, ok := data.(string)
	if to != stringsType || !ok {
		return data, nil
	}
	out := []string{}
	for item := range strings.SplitSeq(str, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out, nil
}

var templatesType = reflect.TypeFor[[]Template]()

// templatesHook reads whatsapp.templates from the environment as a JSON
// list, and refuses keys a template does not have (in either source).
func templatesHook(from, to reflect.Type, data any) (any, error) {
	if to != templatesType {
		return data, nil
	}
	if str, ok := data.(string); ok {
		var list []any
		if err := json.Unmarshal([]byte(str), &list); err != nil {
			return nil, fmt.Errorf(`a JSON list of {"name","language","body"} is expected: %v`, err)
		}
		data = list
	}
	items, ok := data.([]any)
	if !ok {
		return data, nil
	}
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("item %d is not a template (name, language, body)", i)
		}
		for k := range m {
			if k != "name" && k != "language" && k != "body" {
				return nil, fmt.Errorf("item %d: unknown key %q (a template has name, language, body)", i, k)
			}
		}
	}
	return items, nil
}

// yamlParser is a koanf.Parser that keeps every YAML scalar as its source
// text, so that +919800000001 stays a phone number instead of becoming the
// integer 919800000001; the typed Config decides how to read each value.
type yamlParser struct{}

func (yamlParser) Unmarshal(b []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		return map[string]any{}, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return map[string]any{}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the file must be a mapping of sections (http:, database:, ...)", root.Line)
	}
	v, err := yamlValue(root, 0)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

func (yamlParser) Marshal(m map[string]any) ([]byte, error) {
	return yaml.Marshal(m)
}

func yamlValue(n *yaml.Node, depth int) (any, error) {
	if depth > 32 {
		return nil, fmt.Errorf("line %d: nested too deeply", n.Line)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return yamlValue(n.Alias, depth+1)
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlValue(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if kn.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a key must be a plain name", kn.Line)
			}
			if strings.Contains(kn.Value, ".") {
				return nil, fmt.Errorf("line %d: key %q contains '.': write it nested, one section per level", kn.Line, kn.Value)
			}
			if kn.Value == "<<" {
				return nil, fmt.Errorf("line %d: merge keys (<<) are not supported", kn.Line)
			}
			if _, dup := out[kn.Value]; dup {
				return nil, fmt.Errorf("line %d: key %q appears twice", kn.Line, kn.Value)
			}
			v, err := yamlValue(vn, depth+1)
			if err != nil {
				return nil, err
			}
			out[kn.Value] = v
		}
		return out, nil
	}
	return nil, errors.New("unsupported YAML node")
}
