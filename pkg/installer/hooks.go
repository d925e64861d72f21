package installer

// raceHooks lets a test act at the two instants where a foreign write can
// race a config write: after the net dir was read (and merged), and just
// before the new content is renamed into place. Production leaves them nil.
type raceHooks struct {
	afterRead    func(path string)
	beforeRename func(path string)
}

func (h *raceHooks) onAfterRead(path string) {
	if h != nil && h.afterRead != nil {
		h.afterRead(path)
	}
}

func (h *raceHooks) onBeforeRename(path string) {
	if h != nil && h.beforeRename != nil {
		h.beforeRename(path)
	}
}
