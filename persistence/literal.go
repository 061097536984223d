package persistence

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SQL literals of the committer's scripts (MySQL).
//
// A script's values are written into its text here instead of being handed
// to database/sql and the driver as arguments: each argument costs an
// interface, a driver value and an interpolation pass, thousands per batch.
// A value is written so that its meaning does not depend on the session's
// SQL mode:
//   - a string of valid UTF-8 without quote, backslash or control character
//     (tab, newline and carriage return allowed) is quoted as it is: no
//     escape is needed, whether or not NO_BACKSLASH_ESCAPES is set;
//   - any other string is a hex literal with the utf8mb4 introducer
//     (_utf8mb4 X'...'), and any other byte string a plain hex literal
//     (binary): nothing in it is read as SQL;
//   - numbers in decimal, times quoted as DATETIME(6) text in UTC, nil as
//     NULL.
//
// The connection speaks utf8mb4 (openMySQL), whose multi-byte characters
// never contain a quote or backslash byte.

// plain marks the bytes a quoted literal may hold as they are.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '\'' && c != '\\'
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = true // parts of UTF-8 characters (the string is checked valid)
	}
	t['\t'], t['\n'], t['\r'] = true, true, true
	return t
}()

func plainText[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if !plain[s[i]] {
			return false
		}
	}
	return true
}

// mysqlTime is how DATETIME(6) values are written (UTC, as the session's
// time zone).
const mysqlTime = "2006-01-02 15:04:05.999999"

// appendLiteral writes v as a SQL literal.
func appendLiteral(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "NULL"...), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(v), 10), nil
	case bool:
		if v {
			return append(b, '1'), nil
		}
		return append(b, '0'), nil
	case float64:
		return strconv.AppendFloat(b, v, 'g', -1, 64), nil
	case string:
		if plainText(v) && utf8.ValidString(v) {
			b = append(b, '\'')
			b = append(b, v...)
			return append(b, '\''), nil
		}
		b = append(b, "_utf8mb4 X'"...)
		b = hex.AppendEncode(b, []byte(v))
		return append(b, '\''), nil
	case []byte:
		return appendBinary(b, v), nil
	case json.RawMessage:
		return appendBinary(b, v), nil
	case time.Time:
		b = append(b, '\'')
		b = v.UTC().AppendFormat(b, mysqlTime)
		return append(b, '\''), nil
	}
	return b, fmt.Errorf("script: no SQL literal for a %T", v)
}

func appendBinary(b, v []byte) []byte {
	if plainText(v) && utf8.Valid(v) {
		b = append(b, "_binary'"...)
		b = append(b, v...)
		return append(b, '\'')
	}
	b = append(b, "X'"...)
	b = hex.AppendEncode(b, v)
	return append(b, '\'')
}

// interpolate appends query with each ? replaced by the next of args. The
// queries are the store's own: a ? in them is always a placeholder.
func interpolate(b []byte, query string, args []any) ([]byte, error) {
	n := 0
	for {
		i := strings.IndexByte(query, '?')
		if i < 0 {
			b = append(b, query...)
			break
		}
		b = append(b, query[:i]...)
		query = query[i+1:]
		if n == len(args) {
			return b, fmt.Errorf("script: %d values for more placeholders", len(args))
		}
		var err error
		if b, err = appendLiteral(b, args[n]); err != nil {
			return b, err
		}
		n++
	}
	if n != len(args) {
		return b, fmt.Errorf("script: %d values for %d placeholders", len(args), n)
	}
	return b, nil
}
