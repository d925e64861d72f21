package plugin

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// TestBoundedAnnotationError: the resolver's own error for a huge bad
// annotation value, as ADD returns it, stays short, names the annotation
// and shows the value once.
func TestBoundedAnnotationError(t *testing.T) {
	huge := map[string]string{
		redirect.AnnoExcludeInboundPorts:     strings.Repeat("8080,", 40000) + ",", // empty item: the list is quoted twice
		redirect.AnnoIncludeOutboundPorts:    strings.Repeat("x", 200000),          // one bad item: the whole value, twice
		redirect.AnnoExcludeOutboundIPRanges: strings.Repeat("é", 100000) + "/33",  // multi-byte runes
		redirect.AnnoInterceptionMode:        strings.Repeat("TPROXY", 30000),
	}
	for anno, v := range huge {
		_, rerr := redirect.DefaultNode().Resolve(map[string]string{anno: v}, redirect.Proxy{UID: 1337, GID: 1337})
		if rerr == nil {
			t.Fatalf("%s: accepted", anno)
		}
		err := boundedErr(cniErr(CodeBadAnnotation, "pod default/p: %v; nothing was programmed", rerr))
		var e *types.Error
		if !errors.As(err, &e) || e.Code != CodeBadAnnotation {
			t.Fatalf("%s: %T %v", anno, err, err)
		}
		if len(e.Msg) > maxMessage+64 || len(e.Details) > 0 {
			t.Errorf("%s: message is %d bytes", anno, len(e.Msg))
		}
		if !strings.Contains(e.Msg, "annotation "+anno+"=") || !strings.HasPrefix(e.Msg, "pod default/p: ") {
			t.Errorf("%s: the message does not name the pod and the annotation: %.300s", anno, e.Msg)
		}
		if n := strings.Count(e.Msg, v[:200]); n != 1 {
			t.Errorf("%s: the value's head is shown %d times: %s", anno, n, e.Msg)
		}
		if !strings.Contains(e.Msg, "bytes in all]") {
			t.Errorf("%s: no cut marker: %s", anno, e.Msg)
		}
	}
}

func TestBoundText(t *testing.T) {
	long := strings.Repeat("a", 300)
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{`short "value" kept`, `short "value" kept`},
		{`a lone " quote`, `a lone " quote`},
		{`x="` + long + `": port "` + long + `" bad`, `x="` + long[:256] + `"...[cut: 300 bytes in all]: port (the value quoted above) bad`},
		{`"` + strings.Repeat("€", 100) + `"`, `"` + strings.Repeat("€", 85) + `"...[cut: 300 bytes in all]`},
	} {
		if got := boundText(c.in); got != c.want {
			t.Errorf("boundText(%.40q) =\n%q\nwant\n%q", c.in, got, c.want)
		}
	}
	if got := boundText(strings.Repeat("diff line\n", 10000)); len(got) > maxMessage+64 || !strings.HasSuffix(got, "[cut: 100000 bytes in all]") {
		t.Errorf("an unquoted long message: %d bytes, ends %q", len(got), got[len(got)-40:])
	}
}

func TestBoundedErrKinds(t *testing.T) {
	var typedNil *types.Error
	if err := boundedErr(typedNil); err != nil {
		t.Fatalf("typed nil: %v", err)
	}
	if err := boundedErr(nil); err != nil {
		t.Fatalf("nil: %v", err)
	}
	var e *types.Error
	if err := boundedErr(errors.New(strings.Repeat("x", 10000))); !errors.As(err, &e) || e.Code != types.ErrInternal || len(e.Msg) > maxMessage+64 {
		t.Fatalf("plain error: %v", err)
	}
}
