package installer

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// FuzzMerge drives the conflist merge with arbitrary file content, seeded
// with every golden input (testdata/golden/*/in/*). isConf says the bytes
// are a single-plug-in .conf that is converted first. Properties:
//   - no panic;
//   - a rejected input gets an error naming what is wrong, and no output;
//   - what a runtime loads (libcni) the merge accepts, and the result loads
//     with exactly one mesh-cni plug-in, last;
//   - every other plug-in and top-level key is kept, in order, same JSON;
//   - the merge is idempotent, and cleanup gives back the other plug-ins
//     (the original itself when it held no mesh-cni entry).
func FuzzMerge(f *testing.F) {
	seeds, err := filepath.Glob("testdata/golden/*/in/*")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no golden inputs: %v", err)
	}
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, !isConfList(p))
	}
	// Shapes the golden files lack: keys written with escapes or invalid
	// UTF-8 (kept byte for byte), and a type key in another case, which
	// libcni (encoding/json) matches case-insensitively.
	f.Add([]byte("{\"\\u006eame\":\"n\",\"\xb5\":1,\"plugins\":[{\"type\":\"bridge\",\"\xb5\":2}]}"), false)
	f.Add([]byte(`{"name":"n","plugins":[{"type":"bridge"},{"TYPE":"mesh-cni"},{"Type":"x","type":"mesh-cni"}]}`), false)
	f.Add([]byte(`{"type":"bridge","\u0062ridge":"cni0"}`), true)
	cfg := goldenConfig(f)
	entry := cfg.Entry()
	f.Fuzz(func(t *testing.T, data []byte, isConf bool) {
		if len(data) > 16<<10 {
			// Real configs are a few KiB; the merge is linear, so big
			// inputs only slow the search down.
			return
		}
		list := data
		if isConf {
			l, err := ConfToConfList(data)
			if err != nil {
				checkRejected(t, "ConfToConfList", l, err)
				if _, lerr := libcni.ConfFromBytes(data); lerr == nil && validConfObject(data) {
					t.Fatalf("a .conf libcni loads was rejected: %v", err)
				}
				return
			}
			checkConverted(t, data, l)
			list = l
		}
		out, err := InsertEntry(list, entry)
		if err != nil {
			checkRejected(t, "InsertEntry", out, err)
			if l, lerr := libcni.ConfListFromBytes(list); lerr == nil && len(l.Plugins) > 0 {
				t.Fatalf("a conflist libcni loads was rejected: %v", err)
			}
			return
		}
		checkMerged(t, list, out, entry)
	})
}

// rejection names what is wrong with the input.
var rejection = regexp.MustCompile(`invalid JSON|"plugins"|"type"|network configuration|not an array`)

func checkRejected(t *testing.T, fn string, out []byte, err error) {
	t.Helper()
	if out != nil {
		t.Fatalf("%s returned output along with an error: %v", fn, err)
	}
	if !rejection.MatchString(err.Error()) {
		t.Fatalf("%s error does not say what is wrong: %q", fn, err)
	}
}

// validConfObject: the shapes ConfToConfList refuses on purpose even when
// libcni loads them as a .conf (a "plugins" key means it is a list).
func validConfObject(data []byte) bool {
	obj, err := decodeObject(data)
	if err != nil {
		return false
	}
	_, hasPlugins := obj.get("plugins")
	t, _ := obj.getString("type")
	return !hasPlugins && t != ""
}

// checkConverted: the list holds the .conf verbatim as its only plug-in.
func checkConverted(t *testing.T, conf, list []byte) {
	t.Helper()
	_, plugins, err := splitConfList(list)
	if err != nil || len(plugins) != 1 || !compactEqual(plugins[0], conf) {
		t.Fatalf("converted list does not hold the .conf verbatim (%v):\n%s", err, list)
	}
}

func checkMerged(t *testing.T, list, out, entry []byte) {
	t.Helper()
	origObj, origPlugins, err := splitConfList(list)
	if err != nil {
		t.Fatalf("merge accepted what splitConfList rejects: %v", err)
	}
	outObj, outPlugins, err := splitConfList(out)
	if err != nil {
		t.Fatalf("merge output does not parse: %v\n%s", err, out)
	}
	// Exactly one entry, ours, last.
	if d, err := CheckEntry(out, entry); err != nil || d != DriftNone {
		t.Fatalf("merged list: drift %q %v\n%s", d, err, out)
	}
	// Every other plug-in kept, in order, same JSON.
	kept := withoutEntries(origPlugins)
	others := outPlugins[:len(outPlugins)-1]
	if len(others) != len(kept) {
		t.Fatalf("%d other plug-ins before, %d after", len(kept), len(others))
	}
	for i := range kept {
		if !compactEqual(kept[i], others[i]) {
			t.Fatalf("plug-in %d changed:\n%s\n->\n%s", i, kept[i], others[i])
		}
	}
	// Every top-level key kept, in order; only "plugins" differs.
	if len(origObj) != len(outObj) {
		t.Fatalf("%d top-level keys before, %d after", len(origObj), len(outObj))
	}
	for i := range origObj {
		if origObj[i].Key != outObj[i].Key {
			t.Fatalf("top-level key %d: %q -> %q", i, origObj[i].Key, outObj[i].Key)
		}
	}
	// What a runtime loads still loads, with our entry once and last.
	if l, err := libcni.ConfListFromBytes(list); err == nil && len(l.Plugins) > 0 {
		checkRuntimeView(t, out)
	}
	// Idempotent.
	again, err := InsertEntry(out, entry)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("second merge differs (%v):\n%s\n--\n%s", err, out, again)
	}
	// Cleanup gives back the other plug-ins; the original when it had no
	// entry of ours.
	stripped, n, err := RemoveEntries(out)
	if err != nil || n != 1 {
		t.Fatalf("cleanup removed %d entries: %v", n, err)
	}
	_, back, _ := splitConfList(stripped)
	if len(back) != len(kept) {
		t.Fatalf("cleanup left %d plug-ins, want %d", len(back), len(kept))
	}
	if len(kept) == len(origPlugins) && !compactEqual(stripped, list) {
		t.Fatalf("cleanup did not give back the original:\n%s\n--\n%s", list, stripped)
	}
}

// checkRuntimeView loads out with libcni, as a runtime does.
func checkRuntimeView(t *testing.T, out []byte) {
	t.Helper()
	l, err := libcni.ConfListFromBytes(out)
	if err != nil {
		t.Fatalf("the merged list no longer loads with libcni: %v\n%s", err, out)
	}
	n := 0
	for _, p := range l.Plugins {
		if p.Network.Type == PluginType {
			n++
		}
	}
	if n != 1 || l.Plugins[len(l.Plugins)-1].Network.Type != PluginType {
		var types []string
		for _, p := range l.Plugins {
			types = append(types, p.Network.Type)
		}
		b, _ := json.Marshal(types)
		t.Fatalf("a runtime sees plug-in types %s, want exactly one %s, last:\n%s", b, PluginType, out)
	}
}
