package httpx

import (
	"time"

	"github.com/valyala/fasthttp"
)

// NewAPIClient is the pooled fasthttp client a provider API client uses:
// every wait (a free connection, the request, the response) bounded by
// timeout, responses capped at maxBody bytes.
func NewAPIClient(timeout time.Duration, maxConnsPerHost, maxBody int) *fasthttp.Client {
	return &fasthttp.Client{
		Name:                "urva",
		MaxConnsPerHost:     maxConnsPerHost,
		MaxConnWaitTimeout:  timeout,
		MaxIdleConnDuration: time.Minute,
		ReadTimeout:         timeout,
		WriteTimeout:        timeout,
		MaxResponseBodySize: maxBody,
	}
}
