package config

import (
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/config/configtest"
)

func TestSandboxDir(t *testing.T) {
	for extra, want := range map[string]string{
		``:                         DefaultSandboxDir,
		`,"sandboxDir":""`:         "",
		`,"sandboxDir":"/run/x/s"`: "/run/x/s",
	} {
		c, err := Parse([]byte(configtest.Conf("1.0.0", extra)))
		if err != nil || c.SandboxDir != want {
			t.Errorf("%s: %q %v, want %q", extra, c.SandboxDir, err, want)
		}
	}
	_, err := Parse([]byte(configtest.Conf("1.0.0", `,"sandboxDir":"rel/dir"`)))
	if err == nil || !strings.Contains(err.Error(), "sandboxDir") {
		t.Fatalf("relative path: %v", err)
	}
}
