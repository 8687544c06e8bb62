// Package kubernetes holds wasmproxy's Kubernetes deployment (a kustomize
// base: Deployment, Service, PodDisruptionBudget and the ConfigMaps of the
// Envoy bootstrap and the WasmPlugins) and its test, which checks the
// manifests against the Kubernetes API types and the files they mount
// against wasmproxy's own config and Istio loaders.
package kubernetes
