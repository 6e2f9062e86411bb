defmodule Tether.MixProject do
  use Mix.Project

  # No dependencies: Hex is not needed to build or test the companion.
  def project do
    [
      app: :tether,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: false,
      # include/tether.hrl: the wire format's ids and layout, shared by the Erlang modules.
      erlc_include_path: "include",
      # Elixir 1.14's `mix compile --warnings-as-errors` does not cover .erl files.
      erlc_options: [:debug_info, :warnings_as_errors],
      deps: []
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end
end
