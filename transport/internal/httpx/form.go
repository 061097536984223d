package httpx

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"unicode/utf8"
)

// ParseForm decodes an application/x-www-form-urlencoded body, keeping every
// value of a repeated name in order. It refuses a bad percent-escape, a name
// or value that is not UTF-8, and more than maxParams parameters; callers
// wrap the error with their own "malformed" sentinel.
func ParseForm(body []byte, maxParams int) (map[string][]string, error) {
	params := make(map[string][]string)
	count := 0
	for len(body) > 0 {
		var pair []byte
		if i := bytes.IndexByte(body, '&'); i >= 0 {
			pair, body = body[:i], body[i+1:]
		} else {
			pair, body = body, nil
		}
		if len(pair) == 0 {
			continue
		}
		if count++; count > maxParams {
			return nil, fmt.Errorf("more than %d parameters", maxParams)
		}
		rawName, rawValue, _ := bytes.Cut(pair, []byte{'='})
		name, err := unescape(rawName)
		if err != nil {
			return nil, fmt.Errorf("parameter %d name: %v", count, err)
		}
		value, err := unescape(rawValue)
		if err != nil {
			return nil, fmt.Errorf("parameter %q: %v", name, err)
		}
		params[name] = append(params[name], value)
	}
	return params, nil
}

func unescape(b []byte) (string, error) {
	s, err := url.QueryUnescape(string(b))
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", errors.New("not UTF-8")
	}
	return s, nil
}
