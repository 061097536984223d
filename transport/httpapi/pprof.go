package httpapi

import (
	"github.com/valyala/fasthttp/pprofhandler"
)

// pprofPrefix is where the Go profiler is served, behind the admin token:
// /debug/pprof/ (index), /debug/pprof/profile?seconds=N (CPU),
// /debug/pprof/heap, /debug/pprof/goroutine?debug=2, /debug/pprof/trace, ...
const pprofPrefix = "/debug/pprof"

// pprof serves net/http/pprof through fasthttp.
func (s *Server) pprof(c *call) { pprofhandler.PprofHandler(c.ctx) }
