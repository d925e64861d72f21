package installer

import (
	"strings"
	"testing"
)

const testEntry = `{"type":"mesh-cni","kubeconfig":"/k","failurePolicy":"Block"}`

func TestCheckEntry(t *testing.T) {
	for _, tc := range []struct {
		name, list string
		want       Drift
	}{
		{"in place", `{"name":"n","plugins":[{"type":"a"},` + testEntry + `]}`, DriftNone},
		{"in place, other whitespace", `{"name":"n","plugins":[{"type":"a"}, {"type": "mesh-cni", "kubeconfig": "/k", "failurePolicy": "Block"}]}`, DriftNone},
		{"missing", `{"name":"n","plugins":[{"type":"a"}]}`, DriftMissing},
		{"not last", `{"name":"n","plugins":[` + testEntry + `,{"type":"a"}]}`, DriftNotLast},
		{"differs", `{"name":"n","plugins":[{"type":"a"},{"type":"mesh-cni","kubeconfig":"/old"}]}`, DriftDiffers},
		{"key order differs", `{"name":"n","plugins":[{"type":"a"},{"kubeconfig":"/k","type":"mesh-cni","failurePolicy":"Block"}]}`, DriftDiffers},
		{"duplicate", `{"name":"n","plugins":[` + testEntry + `,{"type":"a"},` + testEntry + `]}`, DriftDuplicate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckEntry([]byte(tc.list), []byte(testEntry))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("CheckEntry = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMergeErrors(t *testing.T) {
	for _, bad := range []string{``, `[]`, `{"name":"n"}`, `{"plugins":{}}`, `{"plugins":[]} trailing`, `{"plugins":[`} {
		if _, err := InsertEntry([]byte(bad), []byte(testEntry)); err == nil {
			t.Errorf("InsertEntry(%q) succeeded", bad)
		}
	}
	if _, err := InsertEntry([]byte(`{"name":"n","plugins":[]}`), []byte(`{bad`)); err == nil {
		t.Error("a malformed entry was accepted")
	}
	for _, bad := range []string{`{"name":"n"}`, `{"name":"n","type":"bridge","plugins":[]}`, `not json`} {
		if _, err := ConfToConfList([]byte(bad)); err == nil {
			t.Errorf("ConfToConfList(%q) succeeded", bad)
		}
	}
}

func TestConfToConfListKeepsVersion(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		out, err := ConfToConfList([]byte(`{"cniVersion":"` + v + `","name":"b","type":"bridge","x":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), `"cniVersion": "`+v+`",`) || strings.Index(string(out), `"cniVersion"`) > 5 {
			t.Errorf("version %s not kept at the list level:\n%s", v, out)
		}
	}
	// No cniVersion: none invented.
	out, err := ConfToConfList([]byte(`{"name":"b","type":"bridge"}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "cniVersion") {
		t.Errorf("invented a cniVersion:\n%s", out)
	}
}

func TestRemoveEntriesUnchangedWhenAbsent(t *testing.T) {
	in := []byte("{\"name\":\"n\",   \"plugins\":[{\"type\":\"a\"}]}")
	out, n, err := RemoveEntries(in)
	if err != nil || n != 0 || string(out) != string(in) {
		t.Errorf("RemoveEntries changed a list without entries: %q %d %v", out, n, err)
	}
}

func TestSelectPrimaryLikeRuntimes(t *testing.T) {
	valid := `{"cniVersion":"0.3.1","name":"n","plugins":[{"type":"a"}]}`
	conf := `{"cniVersion":"0.3.1","name":"n","type":"bridge"}`
	files := []DirFile{
		{Name: "99-last.conflist", Data: []byte(valid)},
		{Name: "10-b.json", Data: []byte(conf)},
		{Name: "10-b.conflist", Data: []byte(valid)},
		{Name: "00-a.CONF", Data: []byte(conf)},          // extension is case-sensitive
		{Name: "01-a.conf.disabled", Data: []byte(conf)}, // not a config extension
		{Name: "02-bad.conflist", Data: []byte(`{`)},
	}
	got, skipped := SelectPrimary(files, "")
	if got != "10-b.conflist" {
		t.Errorf("primary = %q, want 10-b.conflist (lexically first valid)", got)
	}
	if len(skipped) != 1 || skipped[0].Name != "02-bad.conflist" {
		t.Errorf("skipped = %v", skipped)
	}
	if got, _ := SelectPrimary(files, "99-last.conflist"); got != "99-last.conflist" {
		t.Errorf("--cni-conf-name ignored: %q", got)
	}
	if got, _ := SelectPrimary(files, "10-b.json"); got != "10-b.json" {
		t.Errorf("--cni-conf-name .json: %q", got)
	}
	if got, _ := SelectPrimary(files, "77-missing.conf"); got != "" {
		t.Errorf("missing --cni-conf-name chose %q", got)
	}
	// After conversion the named .conf lives on as a .conflist.
	if got, _ := SelectPrimary([]DirFile{{Name: "10-x.conflist", Data: []byte(valid)}}, "10-x.conf"); got != "10-x.conflist" {
		t.Errorf("converted --cni-conf-name not followed: %q", got)
	}
}
