package main

import (
	"unicode"

	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shim "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"

	docker "github.com/terraform-providers/terraform-provider-docker/shim"
)

// Terraform type name -> the name the pulumi-docker SDK gives it (module docker:index/<camel>).
var resourceNames = map[string]string{
	"docker_container":      "Container",
	"docker_image":          "RemoteImage",
	"docker_registry_image": "RegistryImage",
	"docker_network":        "Network",
	"docker_volume":         "Volume",
	"docker_config":         "ServiceConfig",
	"docker_secret":         "Secret",
	"docker_service":        "Service",
	"docker_plugin":         "Plugin",
	"docker_tag":            "Tag",
	"docker_buildx_builder": "BuildxBuilder",
}

var dataSourceNames = map[string]string{
	"docker_registry_image":           "getRegistryImage",
	"docker_network":                  "getNetwork",
	"docker_plugin":                   "getPlugin",
	"docker_image":                    "getRemoteImage",
	"docker_logs":                     "getLogs",
	"docker_registry_image_manifests": "getRegistryImageManifests",
}

// Resources whose Terraform `name` is required but optional in the SDK: Pulumi generates
// "<resource name>-<random>" when the program gives none. (A program that sets the name explicitly gets
// delete-before-replace from the bridge, so a replacement does not collide with the old object's name.)
var autoNamed = []string{
	"docker_container", "docker_network", "docker_plugin", "docker_registry_image",
	"docker_secret", "docker_service", "docker_config",
}

// Property names the bridge would pluralise differently from the SDK (generated from the v3 provider).
// (RemoteImage build.buildArg, which Terraform provider v4 dropped in favour of buildArgs, is not mapped.)
var fieldNames = map[string]map[string]*tfbridge.SchemaInfo{
	"docker_container": {
		"command":           {Name: "command"},
		"networks_advanced": {Name: "networksAdvanced"},
	},
}

func lowerFirst(s string) string {
	r := []rune(s)
	r[0] = unicode.ToLower(r[0])
	return string(r)
}

func resourceToken(name string) tokens.Type {
	return tokens.Type("docker:index/" + lowerFirst(name) + ":" + name)
}

func functionToken(name string) tokens.ModuleMember {
	return tokens.ModuleMember("docker:index/" + name + ":" + name)
}

// compatSchema adds back inputs the SDK still has but Terraform provider v4 dropped, as no-ops, so a
// program that sets them keeps working.
func compatSchema(p *schema.Provider) {
	if n, ok := p.ResourcesMap["docker_network"]; ok {
		if _, has := n.Schema["check_duplicate"]; !has {
			n.Schema["check_duplicate"] = &schema.Schema{
				Type:        schema.TypeBool,
				Optional:    true,
				ForceNew:    true,
				Description: "Ignored: Docker always rejects duplicate network names.",
			}
		}
	}
}

// Provider describes how the Terraform provider's schema maps onto Pulumi's.
func Provider() tfbridge.ProviderInfo {
	tf := docker.NewProvider(Version)
	compatSchema(tf)
	p := shimv2.NewProvider(tf)
	info := tfbridge.ProviderInfo{
		P:           p,
		Name:        "docker",
		DisplayName: "Docker",
		Version:     Version,
		GitHubOrg:   "kreuzwerker",
		Description: "A Pulumi package for interacting with Docker in Pulumi programs",
		Keywords:    []string{"pulumi", "docker"},
		License:     "Apache-2.0",
		Config: map[string]*tfbridge.SchemaInfo{
			"registry_auth": {Name: "registryAuth"},
		},
		Resources:   map[string]*tfbridge.ResourceInfo{},
		DataSources: map[string]*tfbridge.DataSourceInfo{},
	}
	// Map only what this build of the Terraform provider actually has.
	p.ResourcesMap().Range(func(tfName string, _ shim.Resource) bool {
		if name, ok := resourceNames[tfName]; ok {
			info.Resources[tfName] = &tfbridge.ResourceInfo{Tok: resourceToken(name), Fields: fieldNames[tfName]}
		}
		return true
	})
	p.DataSourcesMap().Range(func(tfName string, _ shim.Resource) bool {
		if name, ok := dataSourceNames[tfName]; ok {
			info.DataSources[tfName] = &tfbridge.DataSourceInfo{Tok: functionToken(name)}
		}
		return true
	})
	for _, tfName := range autoNamed {
		r, ok := info.Resources[tfName]
		if !ok {
			continue
		}
		if r.Fields == nil {
			r.Fields = map[string]*tfbridge.SchemaInfo{}
		}
		r.Fields["name"] = tfbridge.AutoName("name", 255, "-")
	}
	return info
}
