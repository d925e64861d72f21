package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
)

// ipv6Transparent is IPV6_TRANSPARENT (linux/in6.h); package syscall
// lacks it.
const ipv6Transparent = 75

// listenTransparent opens a TPROXY listener: IP_TRANSPARENT (and its IPv6
// twin, for the dual-stack socket) lets it accept connections addressed to
// any destination, which the mangle table's TPROXY target hands it
// untouched. It needs CAP_NET_ADMIN, as Envoy does in TPROXY mode.
func listenTransparent(port string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if e := syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT, 1); e != nil {
				serr = fmt.Errorf("IP_TRANSPARENT: %w", e)
				return
			}
			// Only a dual-stack (IPv6) socket takes the IPv6 option.
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, ipv6Transparent, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", ":"+port)
}

// serveTransparent reports each connection's original destination: with
// TPROXY it is the socket's own local address.
func serveTransparent(ports []string) ([]io.Closer, error) {
	var out []io.Closer
	for _, p := range ports {
		ln, err := listenTransparent(p)
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			return nil, err
		}
		out = append(out, ln)
		go serve(ln, func(c net.Conn) string {
			return fmt.Sprintf("port=%s tproxy orig=%s peer=%s\n", p, c.LocalAddr(), c.RemoteAddr())
		})
	}
	return out, nil
}
