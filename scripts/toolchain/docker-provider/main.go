// pulumi-resource-docker: a Pulumi resource plugin that serves the docker provider's resources through
// the Terraform bridge, for the PyPI pulumi-docker SDK whose version is stamped into Version.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi/pkg/v3/resource/provider"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Version is set at link time (-X main.Version=...) to the pulumi-docker SDK version this plugin serves.
var Version = "0.0.0-dev"

// oldEngineCompat adapts the bridge to older Pulumi engines (v3.60 here): those send DiffConfig without
// old_inputs, which the bridge diffs against, so every `pulumi up` would report the provider as changed.
// A provider resource's recorded outputs are its inputs, so they stand in for the missing old inputs.
type oldEngineCompat struct {
	pulumirpc.ResourceProviderServer
}

func (s oldEngineCompat) DiffConfig(ctx context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	if req.GetOldInputs() == nil && req.GetOlds() != nil {
		req.OldInputs = req.GetOlds()
	}
	return s.ResourceProviderServer.DiffConfig(ctx, req)
}

func main() {
	// The same entry points as tfbridge.Main, with the compat wrapper around the bridge's server.
	info := Provider()
	for _, arg := range os.Args[1:] {
		switch arg {
		case "-version", "--version":
			fmt.Println(Version)
			return
		case "-get-provider-info", "--get-provider-info":
			if err := json.NewEncoder(os.Stdout).Encode(tfbridge.MarshalProviderInfo(&info)); err != nil {
				cmdutil.ExitError(err.Error())
			}
			return
		}
	}
	ctx := context.Background()
	info.P.InitLogging(ctx)
	// No package schema is embedded: it is only served by GetSchema (code generation) and used by the
	// bridge's optional input type checker; a program using the published SDK needs neither.
	err := provider.Main("docker", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return oldEngineCompat{tfbridge.NewProvider(ctx, host, "docker", Version, info.P, info, nil)}, nil
	})
	if err != nil {
		cmdutil.ExitError(err.Error())
	}
}
