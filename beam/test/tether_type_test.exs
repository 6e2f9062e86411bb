defmodule TetherTypeTest.Point do
  # v1 was %{lon, lat}; v2 renamed them x, y; v3 added z.
  use Tether.Type, name: "test.Point", version: 3, oldest: 1, oldest_writable: 1
  defstruct x: 0.0, y: 0.0, z: 0.0

  @impl true
  def migrate(1, %{lon: x, lat: y}), do: %{x: x, y: y}
  def migrate(2, wire), do: Map.put(wire, :z, 0.0)

  @impl true
  def downgrade(3, wire), do: Map.delete(wire, :z)
  def downgrade(2, %{x: x, y: y}), do: %{lon: x, lat: y}
end

defmodule TetherTypeTest.Stamp do
  # A type whose wire form is not its fields: a tuple.
  use Tether.Type, name: "test.Stamp"
  defstruct [:at]

  @impl true
  def to_wire(%__MODULE__{at: at}), do: {:stamp, at}

  @impl true
  def from_wire({:stamp, at}), do: %__MODULE__{at: at}
end

defmodule TetherTypeTest.Needy do
  use Tether.Type, name: "test.Needy"
  @enforce_keys [:id]
  defstruct [:id, :n]
end

defmodule TetherTypeTest.Fragile do
  use Tether.Type, name: "test.Fragile"
  defstruct [:v]

  @impl true
  def to_wire(%{v: :boom}), do: raise("to_wire exploded")
  def to_wire(s), do: Map.from_struct(s)
end

defmodule TetherTypeTest.Thrower do
  use Tether.Type, name: "test.Thrower"
  defstruct [:v]

  @impl true
  def to_wire(_), do: throw(:nope)
end

defmodule TetherTypeTest do
  use ExUnit.Case, async: false

  alias TetherTypeTest.{Fragile, Needy, Point, Stamp, Thrower}

  setup do
    :ok = Tether.Type.register([Point, Stamp, Fragile, Thrower])
    on_exit(fn -> Enum.each([Point, Stamp, Fragile, Thrower], &Tether.Type.unregister/1) end)
  end

  defp frame(term), do: IO.iodata_to_binary(Tether.Type.encode(term))

  test "the wire form is a %Tether.Type{} an Elixir reader can pattern-match" do
    assert {:ok, %Tether.Type{name: "test.Point", version: 3, value: %{x: 1.0, y: 2.0, z: 3.0}}} =
             Tether.Type.to_wire(%Point{x: 1.0, y: 2.0, z: 3.0})

    Tether.Type.unregister(Point)
    assert {:ok, [%Tether.Type{name: "test.Point", version: 3}]} =
             Tether.decode(frame([%Tether.Type{name: "test.Point", version: 3, value: %{x: 1.0, y: 2.0, z: 3.0}}]))
  end

  test "registered types round-trip through a frame, nested" do
    value = %{a: [1, %Point{x: 1.5}], b: {%Stamp{at: 7}}}
    assert {:ok, ^value} = Tether.decode(frame(value))
  end

  test "large and term-compressed payloads are searched for types too" do
    points = for i <- 1..200, do: %Point{x: i * 1.0, y: 2.0}
    value = %{"points" => points, "pad" => :binary.copy("x", 1000)}

    for opts <- [[], [compressed: true]] do
      assert {:ok, ^value} = Tether.decode(Tether.Type.encode(value, opts))
    end

    # With the type unregistered, the same frame reads as wire terms.
    frame = Tether.Type.encode(value)
    Tether.Type.unregister(Point)
    assert {:ok, %{"points" => [%Tether.Type{name: "test.Point", version: 3} | _]}} = Tether.decode(frame)
  end

  test "the default from_wire/1 takes atom keys, and binary keys that name fields" do
    assert %Point{x: 1.0, y: 2.0, z: 0.0} = Point.from_wire(%{"x" => 1.0, :y => 2.0})
  end

  test "the default from_wire/1 refuses keys that name no field, as Python's does, naming them" do
    for key <- ["no such field here", :w, 1] do
      e = assert_raise ArgumentError, fn -> Point.from_wire(%{:x => 1.0, key => 1}) end
      assert e.message =~ "1 key(s) that TetherTypeTest.Point has no field for: [#{inspect(key)}]"
    end

    frame = :tether.encode([%Tether.Type{name: "test.Point", version: 3, value: %{x: 1.0, y: 2.0, z: 0.0, w: 5}}])
    assert {:error, {:type_failed, "test.Point", :from_wire, %ArgumentError{}} = reason} = Tether.decode(frame)
    assert Tether.Type.format_error(reason) =~ ~r/^Type test.Point: the :from_wire step failed: the wire value has 1/
  end

  test "the default from_wire/1 enforces @enforce_keys" do
    assert_raise ArgumentError, ~r/the following keys must also be given.*:id/, fn -> Needy.from_wire(%{n: 1}) end
    assert %Needy{id: 7, n: nil} = Needy.from_wire(%{"id" => 7})
  end

  test "older versions migrate on read, chaining steps" do
    v1 = %Tether.Type{name: "test.Point", version: 1, value: %{lon: 4.0, lat: 5.0}}
    v2 = %Tether.Type{name: "test.Point", version: 2, value: %{x: 1.0, y: 2.0}}
    assert {:ok, [%Point{x: 4.0, y: 5.0, z: 0.0}, %Point{x: 1.0, y: 2.0, z: 0.0}]} =
             Tether.decode(:tether.encode([v1, v2]))
  end

  test "an older version than the oldest migrated is old_type; one below 1 says no writer makes it" do
    for {v, words} <- [{0, "no writer makes"}, {-1, "no writer makes"}] do
      old = %Tether.Type{name: "test.Point", version: v, value: %{}}
      assert {:error, {:old_type, "test.Point", ^v, 1} = reason} = Tether.decode(:tether.encode([old]))
      assert Tether.Type.format_error(reason) =~ words
    end
  end

  test "a newer version than this node knows is an error naming the type and both versions" do
    v4 = %Tether.Type{name: "test.Point", version: 4, value: %{}}
    assert {:error, {:newer_type, "test.Point", 4, 3} = reason} = Tether.decode(:tether.encode([v4]))
    assert Tether.Type.format_error(reason) =~ "Upgrade this node's test.Point to version 4"
  end

  test "plain Tether.encode/2 writes registered types in their wire form, at the reader's version" do
    value = %{a: [%Point{x: 1.5, y: 2.0, z: 0.0}], b: %Stamp{at: 7}}
    assert {:ok, ^value} = Tether.decode(Tether.encode(value))

    Tether.Type.unregister(Point)
    :ok = Tether.Type.register([Point])
    frame = Tether.encode([%Point{x: 1.0, y: 2.0, z: 9.0}], type_versions: %{"test.Point" => 1})
    Tether.Type.unregister(Point)
    assert {:ok, [%Tether.Type{name: "test.Point", version: 1, value: %{lon: 1.0, lat: 2.0}}]} = Tether.decode(frame)

    assert_raise ArgumentError, ~r/test.Stamp was asked for at version 0, which no reader reads/, fn -> Tether.encode([%Stamp{at: 1}], type_versions: %{"test.Stamp" => 0}) end
  end

  test "a reader that knows an older version gets it, through downgrade/2" do
    assert {:ok, %Tether.Type{version: 1, value: %{lon: 1.0, lat: 2.0}}} =
             Tether.Type.to_wire(%Point{x: 1.0, y: 2.0, z: 9.0}, versions: %{"test.Point" => 1})

    assert {:error, {:type_downgrade, "test.Stamp", 0, 1}} =
             Tether.Type.to_wire(%Stamp{at: 1}, versions: %{"test.Stamp" => 0})

    assert_raise ArgumentError, ~r/which no reader reads/, fn ->
      Tether.Type.encode([%Stamp{at: 1}], versions: %{"test.Stamp" => 0})
    end
  end

  test "a failing step is a typed error, not a crash" do
    bad = %Tether.Type{name: "test.Point", version: 1, value: %{unexpected: 1}}
    assert {:error, {:type_failed, "test.Point", {:migrate, 1}, :function_clause} = reason} =
             Tether.decode(:tether.encode(bad))

    assert Tether.Type.format_error(reason) ==
             "Type test.Point: no migrate/2 clause matched version 1's wire value. Add a clause " <>
               "migrate(1, wire) that returns version 2's, matching the value as that version's writers send it."
  end

  test "encode/2 and to_wire/2 take options as a keyword list or a map, and word a bad one as Tether.encode does" do
    for opts <- [[versions: %{"test.Point" => 2}], %{versions: %{"test.Point" => 2}}] do
      assert {:ok, %Tether.Type{version: 2}} = Tether.Type.to_wire(%Point{}, opts)
      assert {:ok, %Point{}} = Tether.decode(Tether.Type.encode(%Point{}, opts))
    end

    assert {:ok, _} = Tether.decode(Tether.Type.encode(%Point{}, %{compression: :gzip}))
    e = assert_raise ArgumentError, fn -> Tether.Type.encode(%Point{}, compresion: :gzip) end
    assert e.message == Exception.message(catch_error(Tether.encode(1, compresion: :gzip)))
    assert_raise ArgumentError, ~r/options must be a keyword list or a map, got :x/, fn -> Tether.Type.encode(1, :x) end

    for bad <- [[1, 2], [{"versions", %{}}]] do
      assert_raise ArgumentError, ~r/options must be a keyword list or a map, got/, fn -> Tether.Type.encode(1, bad) end
    end

    assert_raise ArgumentError, ~r/unknown option\(s\) \[:bogus\]: it takes versions: only/, fn ->
      Tether.Type.to_wire(1, bogus: 1)
    end
    assert_raise ArgumentError, ~r/versions: must be a map/, fn -> Tether.Type.to_wire(1, versions: 3) end
  end

  test "a type that cannot go down to the reader's version says which option or clauses it lacks" do
    assert Tether.Type.format_error({:type_downgrade, "acme.P", 2, 3}) =~
             "give this node's type downgrade/2 clauses down to version 2 and set oldest_writable: 2"

    assert {:error, {:type_downgrade, "test.Stamp", 0, 1} = reason} =
             Tether.Type.to_wire(%Stamp{at: 1}, versions: %{"test.Stamp" => 0})

    assert Tether.Type.format_error(reason) =~ "version 0, which no reader reads"
  end

  test "versions/0 lists what this node reads" do
    assert %{"test.Point" => 3, "test.Stamp" => 1} = Tether.Type.versions()
  end

  @python """
  import sys
  from dataclasses import dataclass
  import tether
  from tether import types

  @dataclass
  class Point:
      x: float
      y: float
      z: float = 0.0

  types.register_type(Point, name="test.Point", version=3,
      migrations={1: lambda w: {"x": w["lon"], "y": w["lat"]}, 2: lambda w: {**w, "z": 0.0}},
      downgrades={3: lambda w: {"x": w["x"], "y": w["y"]}})
  got = tether.loads(open(sys.argv[1], "rb").read())
  want = [Point(1.0, 2.0, 3.0), Point(4.0, 5.0, 0.0), Point(6.0, 7.0, 0.0)]
  assert got == want, got
  old = types.wire("test.Point", 1, {"lon": 8.0, "lat": 9.0})
  open(sys.argv[2], "wb").write(tether.dumps({"echo": got, "old": old}, reader="beam"))
  open(sys.argv[3], "wb").write(tether.dumps([Point(1.0, 1.0, 5.0)], reader="beam",
                                            options={"versions": {"types": {"test.Point": 2}}}))
  """

  test "Elixir -> Python -> Elixir, with values written at older versions on both sides" do
    dir = Tether.TestPython.tmp_dir!()
    [src, echo, down] = for f <- ~w(src echo down), do: Path.join(dir, f)
    # The current version, a v1 value (Python migrates it) and a v2 value written for an older reader.
    {:ok, v2} = Tether.Type.to_wire(%Point{x: 6.0, y: 7.0, z: 99.0}, versions: %{"test.Point" => 2})
    old = %Tether.Type{name: "test.Point", version: 1, value: %{lon: 4.0, lat: 5.0}}
    File.write!(src, Tether.Type.encode([%Point{x: 1.0, y: 2.0, z: 3.0}, old, v2]))

    {out, status} =
      System.cmd(Tether.TestPython.python(), ["-c", @python, src, echo, down],
        env: [{"PYTHONPATH", Tether.TestPython.pythonpath()}], stderr_to_stdout: true)

    assert status == 0, out
    assert {:ok, %{"echo" => echoed, "old" => %Point{x: 8.0, y: 9.0, z: 0.0}}} = Tether.decode(File.read!(echo))
    assert echoed == [%Point{x: 1.0, y: 2.0, z: 3.0}, %Point{x: 4.0, y: 5.0}, %Point{x: 6.0, y: 7.0}]
    # Python wrote version 2 for a reader that said so; this node reads it as version 3.
    assert {:ok, [%Point{x: 1.0, y: 1.0, z: 0.0}]} = Tether.decode(File.read!(down))
    Tether.Type.unregister(Point)
    assert {:ok, [%Tether.Type{name: "test.Point", version: 2, value: %{x: 1.0, y: 1.0} = v}]} =
             Tether.decode(File.read!(down))
    refute Map.has_key?(v, :z)
  end

  @python_atom_name """
  import sys
  from dataclasses import dataclass
  import tether
  from tether import types

  @dataclass
  class Point:
      x: float
      y: float
      z: float = 0.0

  # A name given as an Atom is still written as the binary the BEAM reads.
  types.register_type(Point, name=tether.Atom("test.Point"), version=3)
  open(sys.argv[1], "wb").write(tether.dumps([Point(1.0, 2.0, 3.0)], reader="beam"))
  """

  test "a type Python registered under an Atom name decodes as the struct" do
    out_file = Path.join(Tether.TestPython.tmp_dir!(), "atom_name")

    {out, status} =
      System.cmd(Tether.TestPython.python(), ["-c", @python_atom_name, out_file],
        env: [{"PYTHONPATH", Tether.TestPython.pythonpath()}], stderr_to_stdout: true)

    assert status == 0, out
    assert {:ok, [%Point{x: 1.0, y: 2.0, z: 3.0}]} = Tether.decode(File.read!(out_file))
  end

  @python_newer """
  import sys
  from dataclasses import dataclass
  import tether
  from tether import Atom, types

  @dataclass
  class Point:
      x: float
      y: float
      z: float = 0.0
      tether_test_w_never_an_atom: float = 0.0  # version 4 adds a field this node has no atom for

  types.register_type(Point, name="test.Point", version=4)
  open(sys.argv[1], "wb").write(tether.dumps({"points": [Point(1.0, 2.0)]}, reader="beam"))
  rows = [{"kind": Atom("tether_test_kind_ok")}, {"kind": Atom("tether_test_never_an_atom")}]
  open(sys.argv[2], "wb").write(tether.dumps({"rows": rows}, reader="beam"))
  """

  test "an unknown atom is named with its path; inside a newer type version it is that type's error" do
    dir = Tether.TestPython.tmp_dir!()
    [newer, rows] = for f <- ~w(newer rows), do: Path.join(dir, f)
    _ = :tether_test_kind_ok

    {out, status} =
      System.cmd(Tether.TestPython.python(), ["-c", @python_newer, newer, rows],
        env: [{"PYTHONPATH", Tether.TestPython.pythonpath()}], stderr_to_stdout: true)

    assert status == 0, out
    # The v4 field's name was a bad_etf with no name: now the version this node must upgrade to.
    assert {:error, {:newer_type, "test.Point", 4, 3}} = Tether.decode(File.read!(newer))
    assert {:error, {:bad_etf, message}} = Tether.decode(File.read!(rows))
    assert message =~ "the atom 'tether_test_never_an_atom' at $.rows[1].kind is not known to this node"
    assert message =~ "safe: false"
    Tether.Type.unregister(Point)
    assert {:error, {:bad_etf, message}} = Tether.decode(File.read!(newer))
    assert message =~ "'tether_test_w_never_an_atom' at $.points[0].value (a map key) is not known"
  end

  test "streams: a to_wire that raises is {:error, reason}, words included; type_versions writes the reader's" do
    path = Path.join(Tether.TestPython.tmp_dir!(), "typed.tthr")
    assert {:error, {:type_failed, "test.Fragile", :to_wire, %RuntimeError{}} = reason} =
             Tether.Stream.write([%Fragile{v: 1}, %Fragile{v: :boom}], path)
    assert Tether.Type.format_error(reason) =~ "to_wire exploded"
    assert {:error, {:stream, :incomplete, _}} = Tether.Stream.verify(path)
    e = assert_raise Tether.Error, fn -> Enum.into([%Fragile{v: :boom}], Tether.Stream.into(path)) end
    assert Exception.message(e) =~ "Type test.Fragile: the :to_wire step failed"
    e = assert_raise ArgumentError, fn -> Tether.encode(%Fragile{v: :boom}) end
    assert Exception.message(e) =~ "Type test.Fragile: the :to_wire step failed"
    # A to_wire that throws is the same error, and the file is closed (it escaped both, and stayed open).
    ports = length(Port.list())
    assert {:error, {:type_failed, "test.Thrower", :to_wire, :nope}} = Tether.Stream.write([%Thrower{}], path)
    assert length(Port.list()) == ports
    assert_raise ArgumentError, ~r/test.Thrower: the :to_wire step failed: :nope/, fn -> Tether.encode(%Thrower{}) end

    assert {:ok, _} = Tether.Stream.write([%Point{x: 1.0, y: 2.0, z: 3.0}], path, type_versions: %{"test.Point" => 1})
    Tether.Type.unregister(Point)
    assert [%Tether.Type{version: 1, value: %{lon: 1.0, lat: 2.0}}] = Tether.Stream.read(path) |> Enum.to_list()
  end

  test "streams: resume: onto a file that holds chunks needs append: true, and the file stays whole" do
    path = Path.join(Tether.TestPython.tmp_dir!(), "resumed.tthr")
    {:ok, w} = :tether_stream.open_writer({:file, path}, %{})
    {:ok, w} = :tether_stream.write(w, "one")
    cp = :tether_stream.checkpoint(w)
    {:ok, _} = :tether_stream.abort(w)
    size = File.stat!(path).size
    assert {:error, {:bad_option, :resume, why}} = Tether.Stream.write(["two"], path, resume: cp)
    assert why =~ "add append: true" and File.stat!(path).size == size
    assert {:ok, %{seq: 2}} = Tether.Stream.write(["two"], path, resume: cp, append: true)
    assert Tether.Stream.read(path) |> Enum.to_list() == ["one", "two"]
  end
end
