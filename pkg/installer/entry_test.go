package installer

import (
	"encoding/json"
	"testing"
)

// TestEntrySandboxDir: --sandbox-dir reaches the plug-in's entry; unset, the
// entry leaves the key out so the plug-in's own default applies.
func TestEntrySandboxDir(t *testing.T) {
	for _, c := range []struct {
		flag string
		want any
	}{
		{"", nil},
		{"/run/records", "/run/records"},
	} {
		n := newNode(t)
		args := []string{}
		if c.flag != "" {
			args = append(args, "--sandbox-dir="+c.flag)
		}
		cfg := n.config(t, args...)
		var entry map[string]any
		if err := json.Unmarshal(cfg.Entry(), &entry); err != nil {
			t.Fatal(err)
		}
		if got := entry["sandboxDir"]; got != c.want {
			t.Errorf("--sandbox-dir=%q: entry sandboxDir = %v, want %v", c.flag, got, c.want)
		}
	}
	n := newNode(t)
	if _, err := ParseFlags(n.args("--sandbox-dir=relative/dir"), func(string) string { return "" }); err == nil {
		t.Error("a relative --sandbox-dir was accepted")
	}
}
