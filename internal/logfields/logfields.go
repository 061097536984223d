// Package logfields gives a logger fields of its own without copying its
// context. zerolog's With() makes a child logger with a new context of at
// least 500 bytes; a logger kept by each of tens of thousands of idle
// sockets would hold that much each. Here the fields are added to each
// event as it is written, by a hook: the child shares its parent's context.
package logfields

import "github.com/rs/zerolog"

// Field is a key and a string or integer value.
type Field struct {
	key   string
	str   string
	num   int64
	isStr bool
}

// Str is a string field.
func Str(key, value string) Field { return Field{key: key, str: value, isStr: true} }

// Int64 is an integer field.
func Int64(key string, value int64) Field { return Field{key: key, num: value} }

// With returns l with fields added to every event it writes.
func With(l zerolog.Logger, fields ...Field) zerolog.Logger {
	if len(fields) == 0 {
		return l
	}
	return l.Hook(hook(fields))
}

type hook []Field

func (h hook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	for _, f := range h {
		if f.isStr {
			e.Str(f.key, f.str)
		} else {
			e.Int64(f.key, f.num)
		}
	}
}
