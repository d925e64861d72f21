package cnitest

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SeedPod is the seed document's productpage pod as the injector leaves it
// in CNI mode: the app, the istio-proxy sidecar, no istio-init, and the
// cluster's excluded range.
func SeedPod(namespace, name string, annotations map[string]string) *corev1.Pod {
	uid := int64(1000)
	proxyUID := int64(1337)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name,
			Labels:      map[string]string{"app": "productpage", "version": "v1"},
			Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "bookinfo-productpage",
			Containers: []corev1.Container{
				{
					Name:            "productpage",
					Image:           "docker.io/istio/examples-bookinfo-productpage-v1:1.16.2",
					Ports:           []corev1.ContainerPort{{ContainerPort: 9080}},
					SecurityContext: &corev1.SecurityContext{RunAsUser: &uid},
				},
				{
					Name:            "istio-proxy",
					Image:           "mesh-cni/standin-proxy:dev",
					SecurityContext: &corev1.SecurityContext{RunAsUser: &proxyUID, RunAsGroup: &proxyUID},
				},
			},
		},
	}
}
