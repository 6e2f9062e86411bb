defmodule Tether.MixProject do
  use Mix.Project

  # One version for both runtimes: src/tether/_version.py, which the worker
  # handshake compares. A copy of beam/ without the Python tree (a Hex package)
  # falls back to the version it was packaged with.
  @version_file Path.expand("../src/tether/_version.py", __DIR__)
  @external_resource @version_file
  @version (case File.read(@version_file) do
              {:ok, text} -> Regex.run(~r/__version__\s*=\s*"([^"]+)"/, text, capture: :all_but_first) |> hd()
              {:error, _} -> "0.1.0"
            end)

  # No dependencies: Hex is not needed to build or test the companion.
  def project do
    [
      app: :tether,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: false,
      # include/tether.hrl: the wire format's ids and layout, shared by the Erlang modules.
      erlc_include_path: "include",
      # Elixir 1.14's `mix compile --warnings-as-errors` does not cover .erl files.
      erlc_options: [:debug_info, :warnings_as_errors, {:d, :TETHER_VSN, String.to_charlist(@version)}],
      # test/support: a stand-in for the optional :telemetry library (Hex is unreachable here).
      elixirc_paths: elixirc_paths(Mix.env()),
      description: "Move data between BEAM and Python processes: tether frames, and supervised Python workers and pools.",
      package: package(),
      deps: []
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp package do
    [
      licenses: ["Apache-2.0"],
      links: %{
        "GitHub" => "https://github.com/tether-dev/tether",
        "Wire format" => "https://github.com/tether-dev/tether/blob/main/docs/format.md"
      },
      files: ~w(lib src include mix.exs LICENSE)
    ]
  end
end
