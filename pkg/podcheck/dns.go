package podcheck

import (
	"fmt"
	"strconv"

	"sigs.k8s.io/yaml"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

const (
	// EnvDNSCapture on istio-proxy asks the agent to answer the pod's DNS on
	// 15053; the rules must then send DNS there.
	EnvDNSCapture = "ISTIO_META_DNS_CAPTURE"
	// AnnoProxyConfig is the pod's ProxyConfig override; its proxyMetadata
	// holds the same ISTIO_META_* settings (the injector copies them into
	// the proxy's environment).
	AnnoProxyConfig = "proxy.istio.io/config"
)

// captureDNS reads whether the proxy asks for DNS capture: its environment
// first (what the proxy itself reads, and all Istio's CNI reads), else the
// proxyMetadata of proxy.istio.io/config. note explains a value that could
// not be read, which counts as not asking, as in Istio.
func captureDNS(p *pod.Pod, proxy *pod.Container) (capture bool, note string) {
	v, ok := proxy.Getenv(EnvDNSCapture)
	from := fmt.Sprintf("%s env %s", ProxyContainer, EnvDNSCapture)
	if !ok {
		raw, has := p.Metadata.Annotations[AnnoProxyConfig]
		if !has {
			return false, ""
		}
		var pc struct {
			ProxyMetadata map[string]string `json:"proxyMetadata"`
		}
		if err := yaml.Unmarshal([]byte(raw), &pc); err != nil {
			return false, fmt.Sprintf("annotation %s unreadable (%v): DNS not captured", AnnoProxyConfig, err)
		}
		if v, ok = pc.ProxyMetadata[EnvDNSCapture]; !ok {
			return false, ""
		}
		from = fmt.Sprintf("annotation %s proxyMetadata.%s", AnnoProxyConfig, EnvDNSCapture)
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Sprintf("%s=%q is not a boolean: DNS not captured", from, v)
	}
	if b {
		return true, "DNS captured (" + from + ")"
	}
	return false, ""
}
