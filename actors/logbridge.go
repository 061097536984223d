package actors

import (
	"context"
	"log/slog"

	"github.com/rs/zerolog"
)

// zerologHandler sends Proto.Actor's slog records to the server's zerolog
// logger, so the process writes one log format. Proto.Actor's routine
// chatter (system started, dead letters of closed sockets) is Debug here;
// failures stay visible.
type zerologHandler struct {
	log   zerolog.Logger
	attrs []slog.Attr
}

func (h *zerologHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.GetLevel() <= zerologLevel(l)
}

func (h *zerologHandler) Handle(_ context.Context, r slog.Record) error {
	e := h.log.WithLevel(zerologLevel(r.Level))
	add := func(a slog.Attr) bool {
		e = e.Str(a.Key, a.Value.String())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	e.Msg(r.Message)
	return nil
}

func (h *zerologHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &zerologHandler{log: h.log, attrs: append(append([]slog.Attr{}, h.attrs...), attrs...)}
}

func (h *zerologHandler) WithGroup(string) slog.Handler { return h }

// zerologLevel maps slog levels one step down: Proto.Actor logs routine
// events at Info.
func zerologLevel(l slog.Level) zerolog.Level {
	switch {
	case l >= slog.LevelError:
		return zerolog.ErrorLevel
	case l >= slog.LevelWarn:
		return zerolog.WarnLevel
	default:
		return zerolog.DebugLevel
	}
}
