package redirect

import "strconv"

// Where a resolved setting's value came from.
const (
	FromDefault    = "default"
	FromNodeConfig = "node config"
	FromAnnotation = "annotation"
)

// Setting is one resolved setting as operators read it: the config key (or
// the annotation that set it), the value as written, and its source.
type Setting struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source"`
	// Key is the annotation or node config key that set the value; empty
	// for a default.
	Key string `json:"key,omitempty"`
}

// Sources lists the node-level and annotation settings Resolve reads, each
// with where its value comes from, from the same table Resolve walks, so
// the two cannot disagree. A node value equal to the built-in default is
// reported as the default.
func (n Node) Sources(annotations map[string]string) []Setting {
	def := DefaultNode()
	var out []Setting
	mode := Setting{Name: "interceptionMode", Value: ModeRedirect, Source: FromDefault}
	if v, ok := annotations[AnnoInterceptionMode]; ok {
		mode = Setting{Name: "interceptionMode", Value: v, Source: FromAnnotation, Key: AnnoInterceptionMode}
	}
	out = append(out, mode)
	for _, p := range []struct {
		name      string
		got, want uint16
	}{
		{"outboundPort", n.OutboundPort, def.OutboundPort},
		{"inboundPort", n.InboundPort, def.InboundPort},
		{"inboundTunnelPort", n.InboundTunnelPort, def.InboundTunnelPort},
	} {
		out = append(out, nodeSetting(p.name, strconv.Itoa(int(p.got)), p.got != p.want))
	}
	nodeLists, defLists := n.Lists, def.Lists
	for _, f := range fields {
		name := jsonName(f.anno)
		if v, ok := annotations[f.anno]; ok {
			out = append(out, Setting{Name: name, Value: v, Source: FromAnnotation, Key: f.anno})
			continue
		}
		v := *f.text(&nodeLists)
		out = append(out, nodeSetting(name, v, v != *f.text(&defLists)))
	}
	for _, key := range []string{AnnoRerouteVirtualInterfaces, AnnoKubevirtInterfaces} {
		if v, ok := annotations[key]; ok {
			out = append(out, Setting{Name: "rerouteVirtualInterfaces", Value: v, Source: FromAnnotation, Key: key})
			break
		}
	}
	return out
}

func nodeSetting(name, value string, fromNode bool) Setting {
	if fromNode {
		return Setting{Name: name, Value: value, Source: FromNodeConfig, Key: "redirect." + name}
	}
	return Setting{Name: name, Value: value, Source: FromDefault}
}
