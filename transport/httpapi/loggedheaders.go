package httpapi

import (
	"cmp"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// headersJSON is the JSON object of the request headers a webhook's raw log
// row keeps, from key, value pairs: keys in sorted order (as encoding/json
// writes a map), without the map, the sort and the reflection of
// json.Marshal on every webhook.
func headersJSON(kv ...string) []byte {
	type pair struct{ k, v string }
	ps := make([]pair, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		ps = append(ps, pair{kv[i], kv[i+1]})
	}
	slices.SortFunc(ps, func(a, b pair) int { return cmp.Compare(a.k, b.k) })
	n := 2
	for _, p := range ps {
		n += len(p.k) + len(p.v) + 6
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p.k)
		b = append(b, ':')
		b = appendJSONString(b, p.v)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quote, backslash and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json
// does), everything else as it is.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// statusBodies are the answers {"status": outcome} of the usual outcomes.
var statusBodies = map[string][]byte{}

func init() {
	for _, o := range []string{outcomeProcessed, outcomeDuplicate, outcomeUnknownCall} {
		statusBodies[o] = []byte(`{"status":` + strconv.Quote(o) + `}`)
	}
}

// writeStatus answers 200 with {"status": outcome}.
func writeStatus(ctx *fasthttp.RequestCtx, outcome string) {
	b, ok := statusBodies[outcome]
	if !ok {
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{"status": outcome})
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(b) // shared, never written to
}
