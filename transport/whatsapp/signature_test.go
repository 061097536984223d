package whatsapp

import (
	"errors"
	"strings"
	"testing"
)

func TestVerifySignature(t *testing.T) {
	const secret = "app-secret"
	body := []byte(sampleText)
	good := Sign(secret, body)
	if !strings.HasPrefix(good, "sha256=") || len(good) != len("sha256=")+64 || strings.ToLower(good) != good {
		t.Fatalf("Sign = %q, want sha256=<64 lowercase hex>", good)
	}
	tests := []struct {
		name   string
		secret string
		body   []byte
		header string
		want   error
	}{
		{"valid", secret, body, good, nil},
		{"valid upper-case hex", secret, body, "sha256=" + strings.ToUpper(good[7:]), nil},
		{"valid with spaces", secret, body, " " + good + " ", nil},
		{"missing", secret, body, "", ErrMissingSignature},
		{"blank", secret, body, "   ", ErrMissingSignature},
		{"sha1 prefix", secret, body, "sha1=" + good[7:], ErrBadSignature},
		{"no prefix", secret, body, good[7:], ErrBadSignature},
		{"short", secret, body, good[:len(good)-2], ErrBadSignature},
		{"not hex", secret, body, "sha256=" + strings.Repeat("zz", 32), ErrBadSignature},
		{"wrong secret", "other", body, good, ErrBadSignature},
		{"tampered body", secret, append([]byte(" "), body...), good, ErrBadSignature},
		{"empty secret", "", body, Sign("", body), ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.secret, tt.body, tt.header)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("VerifySignature: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifySignature = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifySubscription(t *testing.T) {
	tests := []struct {
		name                         string
		mode, token, challenge, vtok string
		wantChallenge                string
		wantOK                       bool
	}{
		{"match", "subscribe", "tok", "1158201444", "tok", "1158201444", true},
		{"wrong token", "subscribe", "nope", "1", "tok", "", false},
		{"prefix of token", "subscribe", "to", "1", "tok", "", false},
		{"wrong mode", "unsubscribe", "tok", "1", "tok", "", false},
		{"no mode", "", "tok", "1", "tok", "", false},
		{"unconfigured", "subscribe", "", "1", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := VerifySubscription(tt.mode, tt.token, tt.challenge, tt.vtok)
			if got != tt.wantChallenge || ok != tt.wantOK {
				t.Fatalf("VerifySubscription = %q, %v; want %q, %v", got, ok, tt.wantChallenge, tt.wantOK)
			}
		})
	}
}

func FuzzVerifySignature(f *testing.F) {
	for _, s := range seedBodies() {
		f.Add("app-secret", []byte(s), Sign("app-secret", []byte(s)))
		f.Add("app-secret", []byte(s), "sha256=00")
	}
	f.Add("", []byte{}, "")
	f.Add("k", []byte("x"), "sha256=")
	f.Fuzz(func(t *testing.T, secret string, body []byte, header string) {
		err := VerifySignature(secret, body, header)
		if err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMissingSignature) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		want := Sign(secret, body)
		if err == nil && (secret == "" || !strings.EqualFold(strings.TrimSpace(header), want)) {
			t.Fatalf("accepted %q for body %q with secret %q (want %q)", header, body, secret, want)
		}
		if secret != "" {
			if err := VerifySignature(secret, body, want); err != nil {
				t.Fatalf("own signature rejected: %v", err)
			}
		}
	})
}
