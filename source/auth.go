package source

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"sigs.k8s.io/yaml"
)

// credentials returns the credential lookup for a request: the pull
// secret file when given, else the docker config.
func (f *Fetcher) credentials(pullSecret string) (auth.CredentialFunc, error) {
	if pullSecret != "" {
		store, err := pullSecretStore(pullSecret)
		if err != nil {
			return nil, err
		}
		return credentials.Credential(store), nil
	}
	store, err := f.dockerStore()
	if err != nil {
		return nil, err
	}
	return credentials.Credential(store), nil
}

var dockerStores sync.Map // config path → credentials.Store

// dockerStore reads Options.DockerConfig, or docker's default location;
// a missing file means no credentials. Credential helpers named there
// are used as docker would.
func (f *Fetcher) dockerStore() (credentials.Store, error) {
	if s, ok := dockerStores.Load(f.opts.DockerConfig); ok {
		return s.(credentials.Store), nil
	}
	var (
		store credentials.Store
		err   error
	)
	if f.opts.DockerConfig != "" {
		store, err = credentials.NewStore(f.opts.DockerConfig, credentials.StoreOptions{})
	} else {
		store, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
	}
	if err != nil {
		name := f.opts.DockerConfig
		if name == "" {
			name = "the default docker config"
		}
		return nil, fmt.Errorf("reading registry credentials from %s: %v", name, err)
	}
	dockerStores.Store(f.opts.DockerConfig, store)
	return store, nil
}

// pullSecretStore reads a pull secret file: a docker config.json (with
// "auths"), or a Kubernetes Secret of type kubernetes.io/dockerconfigjson
// or kubernetes.io/dockercfg, in YAML or JSON, which is what Istio's
// imagePullSecret names.
func pullSecretStore(file string) (credentials.Store, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("pull secret: %v", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("pull secret %s: neither JSON nor YAML: %v", file, err)
	}
	var doc struct {
		Kind       string            `json:"kind"`
		Type       string            `json:"type"`
		Data       map[string]string `json:"data"`
		StringData map[string]string `json:"stringData"`
		Auths      json.RawMessage   `json:"auths"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("pull secret %s: %v", file, err)
	}
	var config []byte
	switch {
	case doc.Auths != nil:
		config = js
	case doc.Kind == "Secret":
		value := func(key string) ([]byte, bool) {
			if v, ok := doc.StringData[key]; ok {
				return []byte(v), true
			}
			if v, ok := doc.Data[key]; ok {
				b, err := base64.StdEncoding.DecodeString(v)
				return b, err == nil
			}
			return nil, false
		}
		if v, ok := value(".dockerconfigjson"); ok {
			config = v
		} else if v, ok := value(".dockercfg"); ok {
			// The legacy format is the "auths" map alone.
			config = []byte(`{"auths":` + string(v) + `}`)
		} else {
			return nil, fmt.Errorf("pull secret %s: a Secret without data[.dockerconfigjson] or data[.dockercfg] (type %q)", file, doc.Type)
		}
	default:
		return nil, fmt.Errorf("pull secret %s: want a docker config.json (with \"auths\") or a Kubernetes Secret of type kubernetes.io/dockerconfigjson", file)
	}
	store, err := credentials.NewMemoryStoreFromDockerConfig(config)
	if err != nil {
		return nil, fmt.Errorf("pull secret %s: %v", file, err)
	}
	return store, nil
}
