package turn

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// countingStringer counts how often it is formatted.
type countingStringer struct{ n *int }

func (c countingStringer) String() string { *c.n++; return "peer" }

// pion logs every relayed packet at debug level: a line of a disabled level
// is not formatted, one of an enabled level is, with its arguments.
func TestLeveledFormatsOnlyEnabledLines(t *testing.T) {
	var buf bytes.Buffer
	log := loggerFactory{log: zerolog.New(&buf).Level(zerolog.InfoLevel)}.NewLogger("allocation")
	formatted := 0
	arg := countingStringer{&formatted}

	log.Tracef("relay socket received %d bytes from %s", 120, arg)
	log.Debugf("relay socket received %d bytes from %s", 120, arg)
	if formatted != 0 || buf.Len() != 0 {
		t.Fatalf("disabled levels: formatted %d times, wrote %q", formatted, buf.String())
	}
	log.Infof("allocation for %s", arg)
	log.Warnf("refused %s", arg)
	log.Errorf("failed %d %s", 7, arg)
	if formatted != 3 {
		t.Fatalf("enabled levels formatted %d times, want 3", formatted)
	}
	for _, want := range []string{`"level":"info","scope":"turn/allocation","message":"allocation for peer"`,
		`"level":"warn","scope":"turn/allocation","message":"refused peer"`,
		`"level":"error","scope":"turn/allocation","message":"failed 7 peer"`} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("log %q lacks %s", buf.String(), want)
		}
	}
}
