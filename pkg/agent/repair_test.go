package agent

import (
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/repair"
)

func TestRepairModeFlag(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, _, err := ParseFlags(nil, env(nil))
	if err != nil || c.RepairMode != repair.ModeDelete {
		t.Fatalf("default: %q %v", c.RepairMode, err)
	}
	c, _, err = ParseFlags(nil, env(map[string]string{"REPAIR_MODE": "label"}))
	if err != nil || c.RepairMode != repair.ModeLabel {
		t.Fatalf("env: %q %v", c.RepairMode, err)
	}
	c, _, err = ParseFlags([]string{"--repair-mode=off"}, env(map[string]string{"REPAIR_MODE": "label"}))
	if err != nil || c.RepairMode != repair.ModeOff {
		t.Fatalf("flag over env: %q %v", c.RepairMode, err)
	}
	_, _, err = ParseFlags(nil, env(map[string]string{"REPAIR_MODE": "heal"}))
	if err == nil || !strings.Contains(err.Error(), "--repair-mode") || !strings.Contains(err.Error(), "REPAIR_MODE") {
		t.Fatalf("bad mode: %v", err)
	}
}
