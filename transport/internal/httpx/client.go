package httpx

import (
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"urva/internal/rawconn"
)

// NewAPIClient is the pooled fasthttp client a provider API client uses:
// every wait (a free connection, the request, the response) bounded by
// timeout, responses capped at maxBody bytes.
func NewAPIClient(timeout time.Duration, maxConnsPerHost, maxBody int) *fasthttp.Client {
	return &fasthttp.Client{
		Name:                "urva",
		DialTimeout:         Dial,
		MaxConnsPerHost:     maxConnsPerHost,
		MaxConnWaitTimeout:  timeout,
		MaxIdleConnDuration: time.Minute,
		ReadTimeout:         timeout,
		WriteTimeout:        timeout,
		MaxResponseBodySize: maxBody,
	}
}

// Dial is the clients' dialer: fasthttp's own (IPv4 and IPv6, its DNS
// cache), within timeout when one is given, with the connection reading
// and writing through raw system calls (internal/rawconn).
func Dial(addr string, timeout time.Duration) (net.Conn, error) {
	var (
		c   net.Conn
		err error
	)
	if timeout > 0 {
		c, err = fasthttp.DialDualStackTimeout(addr, timeout)
	} else {
		c, err = fasthttp.DialDualStack(addr)
	}
	if err != nil {
		return nil, err
	}
	return rawconn.Wrap(c), nil
}
