package agentapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	in := Request{Version: Version, Kind: KindPod, Pod: &PodRequest{Namespace: "ns", Name: "p", UID: "u", WaitMillis: 300}}
	if err := WriteMessage(&b, &in); err != nil {
		t.Fatal(err)
	}
	var out Request
	if err := ReadMessage(&b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Kind != KindPod || *out.Pod != *in.Pod || out.Validate() != nil {
		t.Fatalf("got %+v", out)
	}
}

// An oversized length is refused from the header alone: nothing of the
// body is read (the reader here would fail if it were).
func TestOversizedRefusedBeforeReading(t *testing.T) {
	hdr := make([]byte, 4)
	binary.BigEndian.PutUint32(hdr, MaxMessage+1)
	r := &failAfter{data: hdr}
	var req Request
	if err := ReadMessage(r, &req); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
	if r.reads > 1 {
		t.Fatalf("read %d times", r.reads)
	}
	big := Report{Verb: "ADD", Reason: strings.Repeat("x", MaxMessage)}
	if err := WriteMessage(&bytes.Buffer{}, &big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("writing oversized: %v", err)
	}
}

type failAfter struct {
	data  []byte
	reads int
}

func (f *failAfter) Read(p []byte) (int, error) {
	f.reads++
	if f.reads > 1 {
		return 0, errors.New("body read")
	}
	return copy(p, f.data), nil
}

func TestGarbledAndShort(t *testing.T) {
	frame := func(body string) *bytes.Reader {
		b := make([]byte, 4+len(body))
		binary.BigEndian.PutUint32(b, uint32(len(body)))
		copy(b[4:], body)
		return bytes.NewReader(b)
	}
	var req Request
	if err := ReadMessage(frame("{not json"), &req); err == nil || !strings.Contains(err.Error(), "garbled") {
		t.Fatalf("garbled: %v", err)
	}
	short := frame(`{"v":1}`)
	b := make([]byte, short.Len()-2)
	_, _ = short.Read(b)
	if err := ReadMessage(bytes.NewReader(b), &req); err == nil || !strings.Contains(err.Error(), "short") {
		t.Fatalf("short: %v", err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Version: 2, Kind: KindPod}, "version 2"},
		{Request{Version: 1, Kind: "x"}, `kind "x"`},
		{Request{Version: 1, Kind: KindPod}, "pod field"},
		{Request{Version: 1, Kind: KindPod, Pod: &PodRequest{Name: "p"}}, "pod.namespace"},
		{Request{Version: 1, Kind: KindPod, Pod: &PodRequest{Namespace: "n", Name: "p", WaitMillis: -1}}, "waitMillis"},
		{Request{Version: 1, Kind: KindReport}, "report field"},
		{Request{Version: 1, Kind: KindReport, Report: &Report{}}, "report.verb"},
	} {
		if err := c.req.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.req, err, c.want)
		}
	}
}

// The plug-in accepts only an answer about the pod it asked for.
func TestCheckAnswer(t *testing.T) {
	p := &pod.Pod{Metadata: pod.Metadata{Namespace: "ns", Name: "p"}}
	req := PodRequest{Namespace: "ns", Name: "p", UID: "u1"}
	ok := Response{Version: 1, Status: StatusOK, UID: "u1", Pod: p}
	if got, uid, err := checkAnswer(&ok, req); err != nil || got != p || uid != "u1" {
		t.Fatalf("ok answer: %v %v", uid, err)
	}
	other := &pod.Pod{Metadata: pod.Metadata{Namespace: "ns", Name: "q"}}
	for name, c := range map[string]struct {
		resp Response
		want string
	}{
		"version":  {Response{Version: 2, Status: StatusOK, UID: "u1", Pod: p}, "version 2"},
		"miss":     {Response{Version: 1, Status: StatusMiss, Error: "gone"}, "miss: gone"},
		"notready": {Response{Version: 1, Status: StatusNotReady}, "not-ready"},
		"status":   {Response{Version: 1, Status: "maybe"}, `status "maybe"`},
		"nopod":    {Response{Version: 1, Status: StatusOK, UID: "u1"}, "without a pod"},
		"otherpod": {Response{Version: 1, Status: StatusOK, UID: "u1", Pod: other}, "ns/q"},
		"nouid":    {Response{Version: 1, Status: StatusOK, Pod: p}, "without the pod's uid"},
		"otheruid": {Response{Version: 1, Status: StatusOK, UID: "u2", Pod: p}, "uid u2"},
	} {
		if _, _, err := checkAnswer(&c.resp, req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
}

func TestCheckPeer(t *testing.T) {
	if err := CheckPeer(Cred{PID: 1, UID: 0}, 0); err != nil {
		t.Fatal(err)
	}
	if err := CheckPeer(Cred{PID: 7, UID: 65534}, 0); err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("got %v", err)
	}
}

// FuzzReadMessage: whatever arrives, ReadMessage returns (no panic, no
// allocation beyond the bound) and a request it accepts validates or names
// its fault.
func FuzzReadMessage(f *testing.F) {
	var b bytes.Buffer
	_ = WriteMessage(&b, &Request{Version: 1, Kind: KindPod, Pod: &PodRequest{Namespace: "default", Name: "productpage-v1-6b746f74dc-9stvs", UID: "0b7d"}})
	f.Add(b.Bytes())
	b.Reset()
	_ = WriteMessage(&b, &Request{Version: 1, Kind: KindReport, Report: &Report{Verb: "ADD", Decision: DecisionRedirected}})
	f.Add(b.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req Request
		if err := ReadMessage(bytes.NewReader(data), &req); err != nil {
			return
		}
		_ = req.Validate()
	})
}
