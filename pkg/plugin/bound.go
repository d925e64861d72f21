package plugin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/containernetworking/cni/pkg/types"
)

// Bounds of what a CNI error carries. The runtime stores the message and
// the kubelet copies it into pod events: a pod's annotations (up to
// 256 KiB) must not come back at full length, let alone twice.
const (
	maxQuoted  = 256  // bytes of one quoted value shown
	maxMessage = 4096 // bytes of a whole message or details field
)

// boundedErr makes any verb error a CNI error whose message and details
// are bounded (boundText).
func boundedErr(err error) error {
	if err == nil {
		return nil
	}
	var e *types.Error
	if errors.As(err, &e) && e == nil {
		return nil // a typed nil: no error
	}
	if e == nil {
		e = types.NewError(types.ErrInternal, err.Error(), "")
	}
	return &types.Error{Code: e.Code, Msg: boundText(e.Msg), Details: boundText(e.Details)}
}

// boundText shortens s for an error: every Go-quoted value (as %q writes
// annotation values and list items) longer than maxQuoted is cut to its
// first maxQuoted bytes with a marker giving its full length; a cut value
// that repeats one already shown is replaced by a reference to it; and the
// whole is cut at maxMessage. Text outside quotes (the names of the pod,
// annotation or key at fault, which come first) is kept.
func boundText(s string) string {
	var b strings.Builder
	shown := map[string]bool{}
	for rest := s; rest != ""; {
		i := strings.IndexByte(rest, '"')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		rest = rest[i:]
		q, err := strconv.QuotedPrefix(rest)
		if err != nil { // a lone quote: plain text
			b.WriteByte('"')
			rest = rest[1:]
			continue
		}
		rest = rest[len(q):]
		v, err := strconv.Unquote(q)
		if err != nil || len(v) <= maxQuoted {
			b.WriteString(q)
			continue
		}
		cut := strconv.Quote(truncate(v, maxQuoted))
		if shown[cut] {
			b.WriteString("(the value quoted above)")
			continue
		}
		shown[cut] = true
		fmt.Fprintf(&b, "%s...[cut: %d bytes in all]", cut, len(v))
	}
	out := b.String()
	if len(out) > maxMessage {
		out = fmt.Sprintf("%s...[cut: %d bytes in all]", truncate(out, maxMessage), len(out))
	}
	return out
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
