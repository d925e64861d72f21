package k8s

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client is a PodGetter over client-go's REST client. It registers core/v1
// alone instead of linking the generated clientset, whose scheme of every
// API group costs the plug-in megabytes and milliseconds at every exec.
type Client struct {
	rest rest.Interface
}

// NewClient builds a client from a kubeconfig file. It makes no request.
func NewClient(kubeconfig string, perRequest time.Duration) (*Client, error) {
	if kubeconfig == "" {
		return nil, fmt.Errorf("config key kubeconfig is empty: the plug-in needs it to read pods")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	cfg.Timeout = perRequest
	cfg.UserAgent = "mesh-cni"
	// Protobuf is what kubelet speaks too: smaller and faster to decode.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	// Retries are ours (GetPod); a process that sends one request has no use
	// for the client's rate limiter.
	cfg.QPS, cfg.Burst = 50, 50
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return &Client{rest: rc}, nil
}

// GetPod implements PodGetter.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	err := c.rest.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(pod)
	if err != nil {
		return nil, err
	}
	return pod, nil
}
