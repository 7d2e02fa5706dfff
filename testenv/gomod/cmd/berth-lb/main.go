// berth-lb: the test environment's load-balancer implementation. It gives every Service of
// type LoadBalancer an address from a range of its own (198.18.0.0/24 by default, RFC 2544's
// benchmarking range: never routed on the internet) in status.loadBalancer.ingress, the way a
// cloud's service controller or MetalLB does. kube-proxy then answers that address on this
// host (its KUBE-EXT rules match the status address). Addresses are freed when the Service is
// deleted or stops being a LoadBalancer; one that already has an address keeps it. Services
// with a spec.loadBalancerClass are left to that class's implementation.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type allocator struct {
	mu    sync.Mutex
	first netip.Addr
	size  int
	used  map[netip.Addr]string // address -> namespace/name
}

func (a *allocator) take(owner string, want netip.Addr) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if want.IsValid() {
		if o, ok := a.used[want]; !ok || o == owner {
			a.used[want] = owner
			return want, nil
		}
	}
	ip := a.first
	for i := 0; i < a.size; i++ {
		if _, ok := a.used[ip]; !ok {
			a.used[ip] = owner
			return ip, nil
		}
		ip = ip.Next()
	}
	return netip.Addr{}, fmt.Errorf("all %d addresses from %s are in use", a.size, a.first)
}

func (a *allocator) free(owner string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip, o := range a.used {
		if o == owner {
			delete(a.used, ip)
		}
	}
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	first := flag.String("first", "198.18.0.10", "first address handed out")
	size := flag.Int("size", 240, "how many addresses")
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	start, err := netip.ParseAddr(*first)
	if err != nil {
		log.Fatalf("--first: %v", err)
	}
	a := &allocator{first: start, size: *size, used: map[netip.Addr]string{}}
	ctx := context.Background()
	for {
		if err := run(ctx, client, a); err != nil {
			log.Printf("watch ended: %v; listing again", err)
		}
	}
}

func run(ctx context.Context, client *kubernetes.Clientset, a *allocator) error {
	list, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range list.Items {
		reconcile(ctx, client, a, &list.Items[i])
	}
	w, err := client.CoreV1().Services("").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		svc, ok := ev.Object.(*corev1.Service)
		if !ok {
			continue
		}
		owner := svc.Namespace + "/" + svc.Name
		switch ev.Type {
		case watch.Deleted:
			a.free(owner)
		case watch.Added, watch.Modified:
			reconcile(ctx, client, a, svc)
		}
	}
	return fmt.Errorf("result channel closed")
}

func reconcile(ctx context.Context, client *kubernetes.Clientset, a *allocator, svc *corev1.Service) {
	owner := svc.Namespace + "/" + svc.Name
	// Like the cloud controllers, it serves only Services of no loadBalancerClass: one with a
	// class waits for that class's implementation (the tests use that to see a cluster where
	// nothing assigns addresses).
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil {
		a.free(owner)
		return
	}
	var have netip.Addr
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		have, _ = netip.ParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
	}
	ip, err := a.take(owner, have)
	if err != nil {
		log.Printf("%s: %v", owner, err)
		return
	}
	if have == ip {
		return
	}
	mode := corev1.LoadBalancerIPModeVIP
	svc = svc.DeepCopy()
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String(), IPMode: &mode}}
	if _, err := client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		log.Printf("%s: setting address %s: %v", owner, ip, err)
		a.free(owner)
		return
	}
	fmt.Fprintf(os.Stderr, "%s: %s\n", owner, ip)
}
