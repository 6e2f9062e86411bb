defmodule Tether.MixProject do
  use Mix.Project

  # No dependencies: Hex is not needed to build or test the companion.
  def project do
    [
      app: :tether,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: false,
      deps: []
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end
end
