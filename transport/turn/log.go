package turn

import (
	"github.com/pion/logging"
	"github.com/rs/zerolog"
)

// loggerFactory routes pion's log lines to zerolog.
type loggerFactory struct{ log zerolog.Logger }

func (f loggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return leveled{f.log.With().Str("scope", "turn/"+scope).Logger()}
}

// leveled formats a line only when its level is enabled (zerolog's Msgf
// on a disabled event does nothing): pion logs every relayed packet at
// debug level.
type leveled struct{ l zerolog.Logger }

func (l leveled) Trace(m string)            { l.l.Trace().Msg(m) }
func (l leveled) Tracef(f string, a ...any) { l.l.Trace().Msgf(f, a...) }
func (l leveled) Debug(m string)            { l.l.Debug().Msg(m) }
func (l leveled) Debugf(f string, a ...any) { l.l.Debug().Msgf(f, a...) }
func (l leveled) Info(m string)             { l.l.Info().Msg(m) }
func (l leveled) Infof(f string, a ...any)  { l.l.Info().Msgf(f, a...) }
func (l leveled) Warn(m string)             { l.l.Warn().Msg(m) }
func (l leveled) Warnf(f string, a ...any)  { l.l.Warn().Msgf(f, a...) }
func (l leveled) Error(m string)            { l.l.Error().Msg(m) }
func (l leveled) Errorf(f string, a ...any) { l.l.Error().Msgf(f, a...) }
