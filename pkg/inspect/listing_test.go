package inspect

import "testing"

// iptables-nft in some versions lists protocol numbers; the seed's listing
// (and iptables-legacy) has names.
func TestProtocolNames(t *testing.T) {
	in := "Chain ISTIO_OUTPUT (1 references)\n" +
		"num      pkts      bytes target     prot opt in     out     source               destination\n" +
		"1           0        0 RETURN     6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:15020\n" +
		"2           0        0 RETURN     0    --  *      lo      127.0.0.6            0.0.0.0/0\n" +
		"3           0        0 RETURN     tcp  --  *      *       0.0.0.0/0            0.0.0.0/0\n"
	want := "Chain ISTIO_OUTPUT (1 references)\n" +
		"num      pkts      bytes target     prot opt in     out     source               destination\n" +
		"1           0        0 RETURN     tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:15020\n" +
		"2           0        0 RETURN     all  --  *      lo      127.0.0.6            0.0.0.0/0\n" +
		"3           0        0 RETURN     tcp  --  *      *       0.0.0.0/0            0.0.0.0/0\n"
	if got := ProtocolNames(in); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}
