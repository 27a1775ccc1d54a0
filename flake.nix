{
  description = "Fogmarket: independently owned fog nodes federated into one FaaS platform by reverse auctions";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { self, nixpkgs, flake-utils }:
    flake-utils.lib.eachDefaultSystem (system:
      let
        pkgs = import nixpkgs { inherit system; };
        lib = pkgs.lib;

        # Cargo.toml, Cargo.lock and the crates; not target/, .run/ or bench results.
        src = lib.cleanSourceWith {
          src = ./.;
          filter = path: type:
            let base = baseNameOf path;
            in !(builtins.elem base [ "target" ".run" "result" ]) && lib.cleanSourceFilter path type;
        };

        # Binaries of the workspace. The integration tests start processes and use the
        # network, so they run with `just test`, not in the sandbox.
        mkBins = { pname, crates, mainProgram, description }:
          pkgs.rustPlatform.buildRustPackage {
            inherit pname src;
            version = "0.1.0";
            cargoLock.lockFile = ./Cargo.lock;
            cargoBuildFlags = lib.concatMap (c: [ "-p" c ]) crates;
            doCheck = false;
            meta = {
              inherit description mainProgram;
              license = with lib.licenses; [ mit asl20 ];
            };
          };

        marketplace = mkBins {
          pname = "marketplace";
          crates = [ "marketplace" ];
          mainProgram = "marketplace";
          description = "Fogmarket marketplace: HTTP API, reverse auctions, node registry, placements";
        };
        fog-node = mkBins {
          pname = "fog-node";
          crates = [ "fog_node" ];
          mainProgram = "fog-node";
          description = "Fogmarket fog node: bids, relays SLAs over the overlay, reserves resources";
        };
        # The launcher looks for `marketplace` and `fog-node` next to its own (resolved)
        # executable, so the three binaries are built into one output.
        testbed = mkBins {
          pname = "testbed";
          crates = [ "testbed" "marketplace" "fog_node" ];
          mainProgram = "testbed";
          description = "Fogmarket testbed: local federation launcher and benchmarks, with both services";
        };
      in
      {
        packages = {
          inherit marketplace fog-node testbed;
          default = testbed;
        };

        apps.default = flake-utils.lib.mkApp { drv = testbed; };

        devShells.default = pkgs.mkShell {
          packages = with pkgs; [
            rustc
            cargo
            clippy
            rustfmt
            rust-analyzer
            cargo-nextest
            just
            postgresql_15
            sqlite
            pkg-config
          ];
          RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
        };

        formatter = pkgs.nixpkgs-fmt;
      });
}
