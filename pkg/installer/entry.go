package installer

import (
	"bytes"
	"encoding/json"
	"path/filepath"
)

// KubeconfigHostPath is the plug-in kubeconfig's path as the host sees it.
func (c *Config) KubeconfigHostPath() string {
	return filepath.Join(c.HostKubeconfigDir, KubeconfigName)
}

// TokenHostPath is the token copy's path as the host sees it.
func (c *Config) TokenHostPath() string { return filepath.Join(c.HostKubeconfigDir, TokenName) }

// Entry renders the mesh-cni plug-in entry (docs/contract.md) in compact
// JSON with a fixed key order, so equal settings give equal bytes.
func (c *Config) Entry() []byte {
	obj := object{
		{Key: "type", Value: jsonValue(PluginType)},
		{Key: "kubeconfig", Value: jsonValue(c.KubeconfigHostPath())},
		{Key: "excludeNamespaces", Value: jsonValue(nonNil(c.ExcludeNamespaces))},
		{Key: "failurePolicy", Value: jsonValue(c.FailurePolicy)},
		{Key: "podLookupTimeout", Value: jsonValue(c.PodLookupTimeout.String())},
		{Key: "iptablesBackend", Value: jsonValue(c.IptablesBackend)},
		{Key: "logLevel", Value: jsonValue(c.PluginLogLevel)},
	}
	if c.PluginLogFile != "" {
		obj = append(obj, member{Key: "logFile", Value: jsonValue(c.PluginLogFile)})
	}
	obj = append(obj,
		member{Key: "installerNamespace", Value: jsonValue(c.InstallerNamespace)},
		member{Key: "installerPodPrefix", Value: jsonValue(c.InstallerPodPrefix)},
	)
	// Always written: the plug-in's default is the agent's default path, so
	// a disabled agent must say "".
	obj = append(obj, member{Key: "agentSocket", Value: jsonValue(c.AgentSocket)})
	if c.SandboxDir != "" {
		obj = append(obj, member{Key: "sandboxDir", Value: jsonValue(c.SandboxDir)})
	}
	if len(c.Redirect) > 0 {
		obj = append(obj, member{Key: "redirect", Value: c.Redirect})
	}
	var b bytes.Buffer
	_ = obj.appendCompact(&b) // every value above is valid JSON
	return b.Bytes()
}

func jsonValue(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimRight(b.Bytes(), "\n")
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
