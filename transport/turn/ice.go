package turn

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// ICE transport policies (RTCConfiguration.iceTransportPolicy).
const (
	PolicyAll   = "all"
	PolicyRelay = "relay"
)

// URIs returns the TURN URIs of a server reachable at host:port over UDP and
// TCP, as browsers take them: turn:<host>:<port>?transport=udp and
// ?transport=tcp. An IPv6 host is written in brackets (with or without them
// in host).
func URIs(host string, port int) []string {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	return []string{
		"turn:" + hp + "?transport=udp",
		"turn:" + hp + "?transport=tcp",
	}
}

// ICEServer is one entry of RTCConfiguration.iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username"`
	Credential string   `json:"credential"`
}

// ICEConfig is what a browser needs to use the TURN server: the credentials
// and URIs (for clients that build their own configuration), the same as a
// ready RTCConfiguration.iceServers list, and the transport policy.
type ICEConfig struct {
	// Username and Password are TURN REST credentials (see Credentials).
	Username string `json:"username"`
	Password string `json:"password"`
	// TTL is how many seconds the credentials stay valid from now.
	TTL int64 `json:"ttl"`
	// URIs are the turn:, turns: and stun: URIs of the server.
	URIs []string `json:"uris"`
	// ICEServers is RTCConfiguration.iceServers: one entry holding URIs
	// with the credentials, or none when there are no URIs.
	ICEServers []ICEServer `json:"ice_servers"`
	// ICETransportPolicy is PolicyRelay or PolicyAll, for
	// RTCConfiguration.iceTransportPolicy.
	ICETransportPolicy string `json:"ice_transport_policy"`
}

// NewICEConfig makes credentials for user from secret, valid for ttl from
// now, for the servers at uris. relayOnly selects PolicyRelay (all media
// through TURN, so the peers never learn each other's address), otherwise
// PolicyAll. With no uris there is no server to authenticate to: the
// credentials are left empty and ICEServers is an empty list. Slices are
// never nil, so the JSON holds [] rather than null.
func NewICEConfig(secret, user string, ttl time.Duration, now time.Time, uris []string, relayOnly bool) ICEConfig {
	c := ICEConfig{
		URIs:               append([]string{}, uris...),
		ICEServers:         []ICEServer{},
		ICETransportPolicy: PolicyAll,
	}
	if relayOnly {
		c.ICETransportPolicy = PolicyRelay
	}
	if len(uris) == 0 {
		return c
	}
	username, password, expires := Credentials(secret, user, ttl, now)
	c.Username, c.Password = username, password
	if left := expires.Sub(now); left > 0 {
		c.TTL = int64(left / time.Second)
	}
	c.ICEServers = append(c.ICEServers, ICEServer{
		URLs:       append([]string{}, uris...),
		Username:   username,
		Credential: password,
	})
	return c
}
