package twilio

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
)

// The official example from Twilio's security documentation.
const (
	vectorToken = "12345"
	vectorURL   = "https://mycompany.com/myapp.php?foo=1&bar=2"
	vectorSig   = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
)

func vectorParams() map[string][]string {
	return map[string][]string{
		"CallSid": {"CA1234567890ABCDE"},
		"Caller":  {"+14158675309"},
		"Digits":  {"1234"},
		"From":    {"+14158675309"},
		"To":      {"+18005551212"},
	}
}

func TestSignatureOfficialVector(t *testing.T) {
	if got := Signature(vectorToken, vectorURL, vectorParams()); got != vectorSig {
		t.Fatalf("Signature = %q, want %q", got, vectorSig)
	}
	if err := VerifySignature(vectorToken, vectorURL, vectorParams(), vectorSig); err != nil {
		t.Fatalf("VerifySignature: %v", err)
	}
	if err := VerifyRequest(vectorToken, "https://mycompany.com", "/myapp.php", "foo=1&bar=2", vectorParams(), vectorSig); err != nil {
		t.Fatalf("VerifyRequest: %v", err)
	}
	// Twilio signed the URL without a port; a server that knows itself as
	// https://mycompany.com:443 accepts it too.
	if err := VerifyRequest(vectorToken, "https://mycompany.com:443/", "/myapp.php", "foo=1&bar=2", vectorParams(), vectorSig); err != nil {
		t.Fatalf("VerifyRequest with explicit port: %v", err)
	}
}

func TestSignatureSortsNamesAndValues(t *testing.T) {
	const url = "https://example.com/webhooks/sms"
	params := map[string][]string{"b": {"2"}, "a": {"z", "y"}, "B": {"1"}}
	mac := hmac.New(sha1.New, []byte("tok"))
	mac.Write([]byte(url + "B1" + "ay" + "az" + "b2"))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if got := Signature("tok", url, params); got != want {
		t.Fatalf("Signature = %q, want %q", got, want)
	}
	if !slices.Equal(params["a"], []string{"z", "y"}) {
		t.Fatalf("Signature reordered the caller's values: %v", params["a"])
	}
	// No parameters: the URL alone.
	mac = hmac.New(sha1.New, []byte("tok"))
	mac.Write([]byte(url))
	if got, want := Signature("tok", url, nil), base64.StdEncoding.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("Signature(no params) = %q, want %q", got, want)
	}
}

func TestVerifySignature(t *testing.T) {
	tampered := vectorParams()
	tampered["Digits"] = []string{"1235"}
	extra := vectorParams()
	extra["Body"] = []string{""}
	tests := []struct {
		name   string
		token  string
		url    string
		params map[string][]string
		header string
		want   error
	}{
		{"valid", vectorToken, vectorURL, vectorParams(), vectorSig, nil},
		{"valid with spaces", vectorToken, vectorURL, vectorParams(), " " + vectorSig + "\t", nil},
		{"missing", vectorToken, vectorURL, vectorParams(), "", ErrMissingSignature},
		{"blank", vectorToken, vectorURL, vectorParams(), "  ", ErrMissingSignature},
		{"wrong token", "54321", vectorURL, vectorParams(), vectorSig, ErrBadSignature},
		{"empty token", "", vectorURL, vectorParams(), Signature("", vectorURL, vectorParams()), ErrBadSignature},
		{"tampered value", vectorToken, vectorURL, tampered, vectorSig, ErrBadSignature},
		{"extra empty parameter", vectorToken, vectorURL, extra, vectorSig, ErrBadSignature},
		{"other URL", vectorToken, "https://mycompany.com/myapp.php?foo=1&bar=3", vectorParams(), vectorSig, ErrBadSignature},
		{"port not tried by VerifySignature", vectorToken, "https://mycompany.com:443/myapp.php?foo=1&bar=2", vectorParams(), vectorSig, ErrBadSignature},
		{"not base64", vectorToken, vectorURL, vectorParams(), "not base64!", ErrBadSignature},
		{"short", vectorToken, vectorURL, vectorParams(), vectorSig[:len(vectorSig)-4], ErrBadSignature},
		{"hex instead of base64", vectorToken, vectorURL, vectorParams(), strings.Repeat("ab", 20), ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.token, tt.url, tt.params, tt.header)
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

func TestCandidateURLs(t *testing.T) {
	tests := []struct {
		public, path, query string
		want                []string
	}{
		{"https://mycompany.com", "/myapp.php", "foo=1&bar=2",
			[]string{"https://mycompany.com/myapp.php?foo=1&bar=2", "https://mycompany.com:443/myapp.php?foo=1&bar=2"}},
		{"https://mycompany.com:443/", "/myapp.php", "",
			[]string{"https://mycompany.com:443/myapp.php", "https://mycompany.com/myapp.php"}},
		{"http://127.0.0.1", "/webhooks/sms", "",
			[]string{"http://127.0.0.1/webhooks/sms", "http://127.0.0.1:80/webhooks/sms"}},
		{"http://127.0.0.1:80", "webhooks/sms", "",
			[]string{"http://127.0.0.1:80/webhooks/sms", "http://127.0.0.1/webhooks/sms"}},
		{"HTTPS://Example.com", "/x", "",
			[]string{"HTTPS://Example.com/x", "HTTPS://Example.com:443/x"}},
		{"https://example.com/urva", "/webhooks/sms", "a=1",
			[]string{"https://example.com/urva/webhooks/sms?a=1", "https://example.com:443/urva/webhooks/sms?a=1"}},
		{"http://127.0.0.1:8080", "/webhooks/sms", "", []string{"http://127.0.0.1:8080/webhooks/sms"}},
		{"https://example.com:80", "/x", "", []string{"https://example.com:80/x"}},
		{"https://[::1]", "/x", "", []string{"https://[::1]/x", "https://[::1]:443/x"}},
		{"https://[::1]:443", "/x", "", []string{"https://[::1]:443/x", "https://[::1]/x"}},
		{"https://user@example.com:443", "/x", "", []string{"https://user@example.com:443/x", "https://user@example.com/x"}},
		{"ftp://example.com", "/x", "", []string{"ftp://example.com/x"}},
		{"example.com", "/x", "", []string{"example.com/x"}},
		{"", "/x", "", []string{"/x"}},
	}
	for _, tt := range tests {
		got := CandidateURLs(tt.public, tt.path, tt.query)
		if !slices.Equal(got, tt.want) {
			t.Errorf("CandidateURLs(%q, %q, %q) = %q, want %q", tt.public, tt.path, tt.query, got, tt.want)
		}
	}
}

func TestVerifyRequestPortVariants(t *testing.T) {
	params := map[string][]string{"MessageSid": {"SM" + strings.Repeat("a", 32)}, "Body": {"hi"}}
	for _, signed := range []string{"https://urva.example.com/webhooks/sms", "https://urva.example.com:443/webhooks/sms"} {
		sig := Signature("tok", signed, params)
		for _, public := range []string{"https://urva.example.com", "https://urva.example.com:443", "https://urva.example.com/"} {
			if err := VerifyRequest("tok", public, "/webhooks/sms", "", params, sig); err != nil {
				t.Errorf("signed %s, public %s: %v", signed, public, err)
			}
		}
		if err := VerifyRequest("tok", "https://other.example.com", "/webhooks/sms", "", params, sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("other host: %v, want ErrBadSignature", err)
		}
		if err := VerifyRequest("tok", "https://urva.example.com:8443", "/webhooks/sms", "", params, sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("other port: %v, want ErrBadSignature", err)
		}
		if err := VerifyRequest("tok", "http://urva.example.com", "/webhooks/sms", "", params, sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("other scheme: %v, want ErrBadSignature", err)
		}
		if err := VerifyRequest("tok", "https://urva.example.com", "/webhooks/sms", "", params, ""); !errors.Is(err, ErrMissingSignature) {
			t.Errorf("no header: %v, want ErrMissingSignature", err)
		}
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add(vectorToken, vectorURL, []byte("CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212"), vectorSig)
	f.Add(vectorToken, vectorURL, []byte(sampleInbound), "AAAA")
	f.Add("tok", "https://example.com/webhooks/sms", []byte(sampleInbound), "")
	f.Add("", "", []byte{}, "")
	f.Add("k", "x", []byte("a=1&a=0&b"), "=")
	f.Fuzz(func(t *testing.T, token, url string, body []byte, header string) {
		params, err := ParseForm(body)
		if err != nil {
			params = map[string][]string{"Body": {string(body)}}
		}
		err = VerifySignature(token, url, params, header)
		if err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMissingSignature) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		want := Signature(token, url, params)
		if err == nil && (token == "" || strings.TrimSpace(header) != want) {
			t.Fatalf("accepted %q for %q with token %q (want %q)", header, url, token, want)
		}
		if token != "" {
			if err := VerifySignature(token, url, params, want); err != nil {
				t.Fatalf("own signature rejected: %v", err)
			}
		}
		if err := VerifyRequest(token, url, "", "", params, header); err == nil && token == "" {
			t.Fatal("VerifyRequest accepted a signature without a token")
		}
	})
}
