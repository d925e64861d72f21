package k8s

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// Client is a PodGetter over client-go's REST client. It registers no API
// types beyond metav1's Status (for error answers) and decodes the pod's
// JSON into pod.Pod: the generated clientset and k8s.io/api/core/v1 would
// cost every plug-in exec megabytes and milliseconds of initialisation.
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
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	cfg.GroupVersion = &schema.GroupVersion{Version: "v1"}
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	cfg.ContentType = "application/json"
	cfg.AcceptContentTypes = "application/json"
	cfg.Timeout = perRequest
	cfg.UserAgent = "mesh-cni"
	// Retries are ours (GetPod); a process that sends one request has no use
	// for the client's rate limiter.
	cfg.QPS, cfg.Burst = 50, 50
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return &Client{rest: rc}, nil
}

// GetPod implements PodGetter. Error answers come back as API errors
// (apierrors.IsNotFound and friends work on them). A 200 is decoded as it
// comes; whether it is the pod asked for is GetPod's (the function's) check.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*pod.Pod, error) {
	raw, err := c.rest.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	p, err := pod.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding pod %s/%s: %w", namespace, name, err)
	}
	return p, nil
}
