package actors

import (
	"errors"
	"strings"
)

// NormalizePhone turns a phone number as typed or as a provider writes it
// ("+91 98111 00001", "919811100001", "whatsapp:+91...") into E.164 with a
// leading '+'. It accepts 8 to 15 digits.
func NormalizePhone(s string) (string, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "whatsapp:")
	var b strings.Builder
	b.WriteByte('+')
	digits := 0
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			digits++
		case r == '+' && i == 0, r == ' ', r == '-', r == '(', r == ')', r == '.':
		default:
			return "", errors.New("phone number has a character that is not a digit: " + s)
		}
	}
	if digits < 8 || digits > 15 {
		return "", errors.New("phone number must have 8 to 15 digits: " + s)
	}
	return b.String(), nil
}
