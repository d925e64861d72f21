package config

import (
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/config/configtest"
)

func TestAgentSocket(t *testing.T) {
	if DefaultAgentSocket != agentapi.DefaultSocket {
		t.Fatalf("plug-in default %s, agent default %s", DefaultAgentSocket, agentapi.DefaultSocket)
	}
	for extra, want := range map[string]string{
		``:                                   DefaultAgentSocket,
		`,"agentSocket":""`:                  "",
		`,"agentSocket":"/run/x/agent.sock"`: "/run/x/agent.sock",
	} {
		c, err := Parse([]byte(configtest.Conf("1.0.0", extra)))
		if err != nil || c.AgentSocket != want {
			t.Errorf("%s: %q %v, want %q", extra, c.AgentSocket, err, want)
		}
	}
	_, err := Parse([]byte(configtest.Conf("1.0.0", `,"agentSocket":"relative.sock"`)))
	if err == nil || !strings.Contains(err.Error(), "agentSocket") {
		t.Fatalf("relative path: %v", err)
	}
}
