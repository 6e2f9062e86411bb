defmodule TetherVersionTest do
  # One version for both runtimes (issue #15): src/tether/_version.py is the
  # source; the mix project, the handshake and the producer string in BEAM
  # frames must all say the same. Change any one copy and this fails.
  use ExUnit.Case, async: true

  @version_py Path.expand("../../src/tether/_version.py", __DIR__)

  defp python_version do
    [v] = Regex.run(~r/^__version__ = "([^"]+)"$/m, File.read!(@version_py), capture: :all_but_first)
    v
  end

  test "mix, the application, the handshake and BEAM frames carry src/tether/_version.py's version" do
    v = python_version()
    assert Mix.Project.config()[:version] == v
    assert to_string(Application.spec(:tether, :vsn)) == v
    assert :tether_protocol.beam_version() == v
    {:ok, info} = :tether.inspect(:tether.encode(%{"a" => 1}))
    assert info.metadata["producer"] == "tether-beam/" <> v
  end

  test "the fallback for a bare erlc build is the same version" do
    hrl = File.read!(Path.expand("../include/tether.hrl", __DIR__))
    assert [_, fallback] = Regex.run(~r/-define\(TETHER_VSN, "([^"]+)"\)/, hrl)
    assert fallback == python_version()
  end
end
