package turn

import (
	"encoding/json"
	"net"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

func TestURIs(t *testing.T) {
	for _, tt := range []struct {
		host string
		port int
		want []string
	}{
		{"203.0.113.7", 3478, []string{"turn:203.0.113.7:3478?transport=udp", "turn:203.0.113.7:3478?transport=tcp"}},
		{"turn.example.com", 443, []string{"turn:turn.example.com:443?transport=udp", "turn:turn.example.com:443?transport=tcp"}},
		{"2001:db8::1", 3478, []string{"turn:[2001:db8::1]:3478?transport=udp", "turn:[2001:db8::1]:3478?transport=tcp"}},
		{"[::1]", 50000, []string{"turn:[::1]:50000?transport=udp", "turn:[::1]:50000?transport=tcp"}},
	} {
		if got := URIs(tt.host, tt.port); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("URIs(%q, %d) = %q, want %q", tt.host, tt.port, got, tt.want)
		}
	}
}

func TestNewICEConfig(t *testing.T) {
	now := time.Unix(1700000000, 0)
	uris := URIs("127.0.0.1", 3478)
	c := NewICEConfig("s3cret", "rm-42", time.Hour, now, uris, false)
	wantUser, wantPass, _ := Credentials("s3cret", "rm-42", time.Hour, now)
	if c.Username != "1700003600:rm-42" || c.Username != wantUser || c.Password != wantPass {
		t.Errorf("credentials %q %q, want %q %q", c.Username, c.Password, wantUser, wantPass)
	}
	if c.TTL != 3600 {
		t.Errorf("ttl = %d, want 3600", c.TTL)
	}
	if c.ICETransportPolicy != "all" {
		t.Errorf("policy = %q", c.ICETransportPolicy)
	}
	want := []ICEServer{{URLs: uris, Username: wantUser, Credential: wantPass}}
	if !reflect.DeepEqual(c.ICEServers, want) || !reflect.DeepEqual(c.URIs, uris) {
		t.Errorf("servers %+v uris %q", c.ICEServers, c.URIs)
	}
	// The result does not share the caller's slice.
	uris[0] = "changed"
	if c.URIs[0] == "changed" || c.ICEServers[0].URLs[0] == "changed" {
		t.Error("NewICEConfig kept the caller's slice")
	}

	if r := NewICEConfig("s3cret", "rm-42", time.Hour, now, URIs("127.0.0.1", 3478), true); r.ICETransportPolicy != "relay" {
		t.Errorf("relay only: policy = %q", r.ICETransportPolicy)
	}

	// The expiry is on a whole second, so a fractional now gives a little
	// less than ttl, never more.
	frac := NewICEConfig("s3cret", "rm-42", time.Hour, now.Add(400*time.Millisecond), URIs("127.0.0.1", 3478), false)
	if frac.TTL != 3599 || frac.Username != "1700003600:rm-42" {
		t.Errorf("fractional now: ttl %d username %q", frac.TTL, frac.Username)
	}
}

func TestNewICEConfigWithoutURIs(t *testing.T) {
	for _, uris := range [][]string{nil, {}} {
		c := NewICEConfig("s3cret", "rm-42", time.Hour, time.Unix(1700000000, 0), uris, true)
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		const want = `{"username":"","password":"","ttl":0,"uris":[],"ice_servers":[],"ice_transport_policy":"relay"}`
		if string(b) != want {
			t.Errorf("got  %s\nwant %s", b, want)
		}
	}
}

func TestICEConfigJSON(t *testing.T) {
	now := time.Unix(1700000000, 0)
	c := NewICEConfig("s3cret", "rm-42", 2*time.Hour, now, []string{"turn:[::1]:3478?transport=udp", "stun:[::1]:3478"}, true)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	pass := computePassword("s3cret", "1700007200:rm-42")
	want := `{"username":"1700007200:rm-42","password":"` + pass + `","ttl":7200,` +
		`"uris":["turn:[::1]:3478?transport=udp","stun:[::1]:3478"],` +
		`"ice_servers":[{"urls":["turn:[::1]:3478?transport=udp","stun:[::1]:3478"],"username":"1700007200:rm-42","credential":"` + pass + `"}],` +
		`"ice_transport_policy":"relay"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	// What a page reads back is what was made.
	var back ICEConfig
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

// The credentials of an ICEConfig open an allocation on the server, made
// with the current or the previous secret, until they expire.
func TestICEConfigAuthenticates(t *testing.T) {
	now := time.Now()
	var clock atomic.Int64 // the server's now, unix nanoseconds
	clock.Store(now.UnixNano())
	s := start(t, Options{Secrets: []string{"new", "old"}, Clock: func() time.Time { return time.Unix(0, clock.Load()) }})
	port := s.Addr().(*net.UDPAddr).Port
	for _, secret := range []string{"new", "old"} {
		c := NewICEConfig(secret, "rm-7", time.Minute, now, URIs("127.0.0.1", port), false)
		relay, err := client(t, s, c.ICEServers[0].Username, c.ICEServers[0].Credential).Allocate()
		if err != nil {
			t.Fatalf("secret %s: %v", secret, err)
		}
		_ = relay.Close()
	}
	if n := s.Stats().AuthFailures; n != 0 {
		t.Fatalf("%d auth failures with good credentials", n)
	}

	c := NewICEConfig("new", "rm-7", time.Minute, now, URIs("127.0.0.1", port), false)
	clock.Store(now.Add(time.Duration(c.TTL+1) * time.Second).UnixNano())
	if relay, err := client(t, s, c.Username, c.Password).Allocate(); err == nil {
		_ = relay.Close()
		t.Fatal("expired credentials accepted")
	}
	clock.Store(now.UnixNano())
	bad := NewICEConfig("other", "rm-7", time.Minute, now, URIs("127.0.0.1", port), false)
	if relay, err := client(t, s, bad.Username, bad.Password).Allocate(); err == nil {
		_ = relay.Close()
		t.Fatal("credentials from another secret accepted")
	}
	if n := s.Stats().AuthFailures; n < 2 {
		t.Fatalf("auth failures = %d, want the expired and the wrong credentials counted", n)
	}
}
