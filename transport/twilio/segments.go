package twilio

import (
	"strings"
	"unicode/utf8"
)

// Segment sizes: a single SMS holds 160 GSM-7 characters or 70 UCS-2 code
// units; a concatenated message loses room to its header, leaving 153 and 67.
const (
	gsmSingle  = 160
	gsmPart    = 153
	ucs2Single = 70
	ucs2Part   = 67
)

// gsmBasic is the GSM 03.38 default alphabet (one septet each, the escape
// itself excluded); gsmExtension holds the characters sent as escape plus one
// septet.
const (
	gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	gsmExtension = "\f^{}\\[~]|€"
)

// GSM7 reports whether body can be sent in the GSM-7 alphabet.
func GSM7(body string) bool {
	for _, r := range body {
		if r < utf8.RuneSelf && isGSMASCII(r) {
			continue
		}
		if !strings.ContainsRune(gsmBasic, r) && !strings.ContainsRune(gsmExtension, r) {
			return false
		}
	}
	return true
}

// isGSMASCII reports whether an ASCII rune is in either GSM-7 table.
func isGSMASCII(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r == '`': // the only printable ASCII character missing from GSM-7
		return false
	case r >= ' ' && r <= '~':
		return true
	}
	return r == '\n' || r == '\r' || r == '\f'
}

// Segments is the number of SMS segments body is sent as: GSM-7 when every
// character allows it (160 septets in one segment, 153 per segment beyond;
// extension characters take two septets and are never split), UCS-2
// otherwise (70 UTF-16 code units in one segment, 67 per segment beyond;
// surrogate pairs are never split). An empty body is one segment.
func Segments(body string) int {
	gsm := GSM7(body)
	single, part := ucs2Single, ucs2Part
	if gsm {
		single, part = gsmSingle, gsmPart
	}
	total := 0
	for _, r := range body {
		total += charUnits(r, gsm)
	}
	if total <= single {
		return 1
	}
	n, used := 1, 0
	for _, r := range body {
		u := charUnits(r, gsm)
		if used+u > part {
			n++
			used = 0
		}
		used += u
	}
	return n
}

// charUnits is what r takes in a segment: septets for GSM-7, UTF-16 code units for UCS-2.
func charUnits(r rune, gsm bool) int {
	if gsm {
		if strings.ContainsRune(gsmExtension, r) {
			return 2
		}
		return 1
	}
	if r >= 0x10000 {
		return 2
	}
	return 1
}
