package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
)

// svcHelperMain: "backend ADDR NAME" serves HTTP on ADDR (TCP) answering
// NAME to every request, and answers NAME to every datagram on ADDR
// (UDP); "udp ADDR" sends one datagram to ADDR and prints the answer.
func svcHelperMain(args []string) error {
	switch {
	case len(args) == 3 && args[0] == "backend":
		pc, err := net.ListenPacket("udp", args[1])
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(args[2]+"\n"), from)
			}
		}()
		ln, err := net.Listen("tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Println("listening")
		return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s\n", args[2], r.RemoteAddr)
		}))
	case len(args) == 2 && args[0] == "udp":
		conn, err := net.Dial("udp", args[1])
		if err != nil {
			return err
		}
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write([]byte("who\n")); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		fmt.Print(string(buf[:n]))
		return nil
	}
	return fmt.Errorf("unknown helper %q (want sink, source, backend or udp)", args)
}

// svcHelper runs the test binary as a service helper in host h.
// TestNetnsServiceVIP: three hosts in tun mode with gossip; a service on
// host 0 balanced over HTTP servers on hosts 1 and 2. curl on host 0
// reaches both through the VIP, the backends see host 0's real address,
// UDP goes through the VIP too, and a backend whose server dies fails its
// TCP health check (probed from its own host) and leaves the table.
func TestNetnsServiceVIP(t *testing.T) {
	RequireRoot(t, "curl")
	gl := newGossipLab(t, 3, "test")
	for i := range 3 {
		gl.start(i, gl.key)
	}
	addrs := gl.setup()
	gl.waitRoutes(15*time.Second, "all hosts learn all routes", func(int, map[string]string) bool { return gl.converged("blue") })
	ctx := context.Background()

	backends := map[string]*Proc{}
	for _, i := range []int{1, 2} {
		h := gl.lab.Hosts[i]
		p := h.helper("backend", addrs[i]+":8080", h.Name)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(p.Output(), "listening") {
			if time.Now().After(deadline) {
				t.Fatalf("%s: backend did not start: %s", h.Name, p.Output())
			}
			time.Sleep(20 * time.Millisecond)
		}
		backends[h.Name] = p
	}
	svc, err := gl.ods[0].Client().CreateService(ctx, api.CreateService{Name: "web", Network: "blue", Ports: []string{"80/tcp", "53/udp"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("service web: VIP %s", svc.VIP)
	for _, i := range []int{1, 2} {
		var err error
		for try := 0; try < 100; try++ { // until gossip brings the service
			if _, err = gl.ods[i].Client().AddBackend(ctx, api.AddBackend{Service: "web", Network: "blue", Addr: addrs[i] + ":8080", Weight: 1, Check: "tcp"}); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: add-backend: %v", gl.lab.Hosts[i].Name, err)
		}
	}
	active := func(want int) func() bool {
		return func() bool {
			s, err := gl.ods[0].Client().Service(ctx, "blue", "web")
			if err != nil {
				return false
			}
			n := 0
			for _, b := range s.Backends {
				if b.InTable {
					n++
				}
			}
			return n == want
		}
	}
	waitCond(t, 10*time.Second, "host 0's table holds both backends", active(2))

	client := gl.lab.Hosts[0]
	seen := map[string]int{}
	for range 20 {
		out, err := client.Try("curl", "-sS", "--max-time", "5", "http://"+svc.VIP+"/")
		if err != nil {
			t.Fatalf("curl http://%s/: %v\n%s", svc.VIP, err, out)
		}
		f := strings.Fields(out)
		if len(f) != 2 || !strings.HasPrefix(f[1], addrs[0]+":") {
			t.Fatalf("curl http://%s/ = %q, want a backend's name and the client's real address %s", svc.VIP, out, addrs[0])
		}
		seen[f[0]]++
	}
	t.Logf("20 curl requests through the VIP: %v", seen)
	if len(seen) != 2 {
		t.Errorf("curl reached %v, want both backends", seen)
	}

	udpSeen := map[string]int{}
	for range 10 {
		p := client.helper("udp", svc.VIP+":53")
		if err := p.Wait(10 * time.Second); err != nil {
			t.Fatalf("UDP through the VIP: %v\n%s", err, p.Output())
		}
		udpSeen[strings.TrimSpace(p.Output())]++
	}
	t.Logf("10 UDP flows through the VIP: %v", udpSeen)
	for name := range udpSeen {
		if backends[name] == nil {
			t.Errorf("UDP answer %q is no backend's name", name)
		}
	}

	out, err := client.Try("curl", "-sS", "--max-time", "5", "http://"+svc.VIP+":81/")
	t.Logf("curl to a port the service does not have: %v %s", err, strings.TrimSpace(out))
	if err == nil {
		t.Errorf("curl to VIP port 81 succeeded: %q", out)
	}

	// Stop host 2's server: its TCP check fails from host 2 and it leaves
	// host 0's table; every request goes to host 1.
	dead := gl.lab.Hosts[2].Name
	stopped := time.Now()
	backends[dead].Kill()
	waitCond(t, 15*time.Second, "the failed backend leaves host 0's table", active(1))
	t.Logf("server stopped → out of the table in %v (2 failed probes 2 s apart)", time.Since(stopped).Round(time.Millisecond))
	for range 10 {
		out, err := client.Try("curl", "-sS", "--max-time", "5", "http://"+svc.VIP+"/")
		if err != nil || strings.HasPrefix(out, dead) {
			t.Fatalf("curl after %s's server died: %q %v", dead, out, err)
		}
	}
	s, _ := gl.ods[0].Client().Service(ctx, "blue", "web")
	for _, b := range s.Backends {
		t.Logf("backend %s: state %s, in table %v, picked %d", b.Addr, b.State, b.InTable, b.Selections)
	}
}

// waitCond polls cond every 50 ms until it holds, failing after d.
func waitCond(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
