defmodule TetherTypeEdgesTest.Point do
  # v1 was %{lon, lat}; v2 renamed them x, y; v3 added z.
  use Tether.Type, name: "edges.Point", version: 3, oldest: 1, oldest_writable: 2
  defstruct x: 0.0, y: 0.0, z: 0.0

  @impl true
  def migrate(1, %{lon: x, lat: y}), do: %{x: x, y: y}
  def migrate(2, wire), do: Map.put(wire, :z, 0.0)

  @impl true
  def downgrade(3, wire), do: Map.delete(wire, :z)
end

defmodule TetherTypeEdgesTest.Rec do
  # v1 had a field that v2 dropped; this step never names it, so its atom may be unknown here.
  use Tether.Type, name: "edges.Rec", version: 2, oldest: 1
  defstruct x: 0

  @impl true
  def migrate(1, w), do: Map.take(w, [:x])
end

defmodule TetherTypeEdgesTest.Shapeless do
  # migrate(2, _) returns a list where from_wire/1 takes a map; no migrate(1, _) at all.
  use Tether.Type, name: "edges.Shapeless", version: 3, oldest: 2
  defstruct [:a]

  @impl true
  def migrate(2, _), do: [:not, :a, :map]
end

defmodule TetherTypeEdgesTest.NoMigrate do
  use Tether.Type, name: "edges.NoMigrate", version: 2, oldest: 1
  defstruct [:a]
end

defmodule TetherTypeEdgesTest do
  use ExUnit.Case, async: false

  alias TetherTypeEdgesTest.{NoMigrate, Point, Rec, Shapeless}

  @types [Point, Rec, Shapeless, NoMigrate]

  setup do
    :ok = Tether.Type.register(@types)
    on_exit(fn -> Enum.each(@types, &Tether.Type.unregister/1) end)
  end

  defp wire(v, value, name \\ "edges.Point"), do: %Tether.Type{name: name, version: v, value: value}
  defp roundtrip(term), do: Tether.decode(IO.iodata_to_binary(:tether.encode(term)))

  describe "typed values as map keys and MapSet members" do
    test "are written in wire form, at the reader's version" do
      p = %Point{x: 1.0, y: 2.0, z: 3.0}
      assert {:ok, set} = Tether.Type.to_wire(MapSet.new([p]))
      assert MapSet.to_list(set) == [wire(3, %{x: 1.0, y: 2.0, z: 3.0})]

      p_wire = wire(2, %{x: 1.0, y: 2.0})
      assert {:ok, %{{^p_wire, 1} => :k}} = Tether.Type.to_wire(%{{p, 1} => :k}, versions: %{"edges.Point" => 2})
    end

    test "are read as migrated structs" do
      set = MapSet.new([wire(1, %{lon: 1.0, lat: 2.0}), wire(3, %{x: 5.0, y: 6.0, z: 7.0})])
      assert {:ok, read} = roundtrip(set)
      assert read == MapSet.new([%Point{x: 1.0, y: 2.0, z: 0.0}, %Point{x: 5.0, y: 6.0, z: 7.0}])

      assert {:ok, %{%Point{x: 1.0, y: 2.0, z: 0.0} => "k", [%Point{x: 3.0, y: 4.0, z: 0.0}] => "l"}} ==
               roundtrip(%{wire(2, %{x: 1.0, y: 2.0}) => "k", [wire(1, %{lon: 3.0, lat: 4.0})] => "l"})
    end

    test "a newer version in a key is the newer_type error" do
      assert {:error, {:newer_type, "edges.Point", 4, 3}} = roundtrip(MapSet.new([wire(4, %{x: 1.0})]))
      assert {:error, {:newer_type, "edges.Point", 4, 3}} = roundtrip(%{{wire(4, %{}), 1} => 1})
    end

    test "two keys that become one value are an error, not a lost value" do
      same = %{wire(1, %{lon: 1.0, lat: 2.0}) => :a, wire(2, %{x: 1.0, y: 2.0}) => :b}
      assert {:error, {:type_failed, "edges.Point", :map_key, {:same_key, :read}} = reason} = roundtrip(same)
      assert Tether.Type.format_error(reason) =~ "two keys of one map (or two members of one MapSet)"

      two = MapSet.new([%Point{x: 1.0, y: 2.0, z: 3.0}, %Point{x: 1.0, y: 2.0, z: 4.0}])
      assert {:error, {:type_failed, "edges.Point", :map_key, {:same_key, :write}}} =
               Tether.Type.to_wire(two, versions: %{"edges.Point" => 2})

      assert_raise ArgumentError, ~r/written at the reader's version/, fn ->
        Tether.encode(two, type_versions: %{"edges.Point" => 2})
      end
    end

    test "a type inside a key's struct or tuple is converted, other keys stay as they are" do
      inner = %{__struct__: Other, p: wire(1, %{lon: 1.0, lat: 2.0})}
      assert {:ok, read} = Tether.Type.from_wire(%{inner => 1, {:t, [wire(3, %{x: 0.0})]} => 2, "s" => 3, 4 => 4})
      assert read == %{%{__struct__: Other, p: %Point{x: 1.0, y: 2.0}} => 1, {:t, [%Point{}]} => 2, "s" => 3, 4 => 4}
    end

    test "Python reads the BEAM's sets and keys of a type, and writes its own for the BEAM" do
      dir = Tether.TestPython.tmp_dir!()
      p = %Point{x: 1.0, y: 2.0, z: 3.0}
      File.write!(Path.join(dir, "set.tthr"), Tether.Type.encode(MapSet.new([p])))
      File.write!(Path.join(dir, "key.tthr"), Tether.Type.encode(%{p => 1}, versions: %{"edges.Point" => 2}))

      code = """
      import sys, os
      from dataclasses import dataclass
      import tether
      from tether import types as tt

      @dataclass(frozen=True)
      class Point:
          x: float
          y: float
          z: float = 0.0

      tt.register_type(Point, name="edges.Point", version=3,
          migrations={1: lambda w: {"x": w["lon"], "y": w["lat"]}, 2: lambda w: {**w, "z": 0.0}})
      d = sys.argv[1]
      print(repr(tether.loads(open(os.path.join(d, "set.tthr"), "rb").read())))
      print(repr(tether.loads(open(os.path.join(d, "key.tthr"), "rb").read())))
      open(os.path.join(d, "py.tthr"), "wb").write(tether.dumps({Point(5.0, 6.0, 7.0)}, format="etf"))
      """

      {out, 0} =
        System.cmd(Tether.TestPython.python(), ["-c", code, dir],
          env: [{"PYTHONPATH", Tether.TestPython.pythonpath()}], stderr_to_stdout: true)

      assert out == "{Point(x=1.0, y=2.0, z=3.0)}\n{Point(x=1.0, y=2.0, z=0.0): 1}\n"
      assert {:ok, MapSet.new([%Point{x: 5.0, y: 6.0, z: 7.0}])} == Tether.decode(File.read!(Path.join(dir, "py.tthr")))
    end
  end

  describe "an unknown atom inside an old version's value" do
    # The atom's name is made at run time, so that nothing in this file creates it.
    defp legacy_name, do: "edges_legacy_" <> for(_ <- 1..5, into: "", do: <<Enum.random(?a..?z)>>)

    # A frame of a edges.Rec value at `version` with a field named `name`: written with a
    # placeholder of the same length, then renamed in the payload (no checksum to fix).
    defp old_frame(name, version) do
      assert byte_size(name) == byte_size("edges_placeholder1")
      term = [wire(version, %{x: 1, edges_placeholder1: true}, "edges.Rec")]
      frame = IO.iodata_to_binary(Tether.encode(term, checksum: :none))
      :binary.replace(frame, "edges_placeholder1", name)
    end

    test "says the type, both versions and the migrate clause to write, then reads once it is written" do
      name = legacy_name()
      assert_raise ArgumentError, fn -> String.to_existing_atom(name) end
      frame = old_frame(name, 1)

      assert {:error, {:bad_etf, why}} = Tether.decode(frame)
      assert why =~ "the atom '#{name}' at $[0].value (a map key) is not known to this node"
      assert why =~ "inside a value of type edges.Rec written at version 1, older than this node's 2"
      assert why =~ "TetherTypeEdgesTest.Rec.migrate(1, wire), e.g. Map.drop(wire, [:#{name}])"
      refute why =~ "upgrade this node"

      # The fix the message gives: the step names the atom.
      Code.compile_string("""
      defmodule TetherTypeEdgesTest.RecFixed do
        use Tether.Type, name: "edges.Rec", version: 2, oldest: 1
        defstruct x: 0
        def migrate(1, w), do: Map.drop(w, [:#{name}])
      end
      """)

      :ok = Tether.Type.register(TetherTypeEdgesTest.RecFixed)
      on_exit(fn -> Tether.Type.unregister(TetherTypeEdgesTest.RecFixed) end)
      assert {:ok, [%{__struct__: TetherTypeEdgesTest.RecFixed, x: 1}]} = Tether.decode(frame)
    end

    test "below the oldest version is the old_type error; at the node's version the advice stays" do
      assert {:error, {:old_type, "edges.Rec", 0, 1}} = Tether.decode(old_frame(legacy_name(), 0))
      assert {:error, {:bad_etf, why}} = Tether.decode(old_frame(legacy_name(), 2))
      assert why =~ "a newer peer may have added it: upgrade this node"
    end
  end

  describe "type version options" do
    @p %TetherTypeEdgesTest.Point{x: 1.0, y: 2.0, z: 3.0}

    test "a version that is not an integer is refused, naming the entry" do
      for bad <- ["2", 2.0, :two, nil] do
        msg = ~s(invalid option :versions: "edges.Point" => #{inspect(bad)}: a version is an integer)
        e = assert_raise ArgumentError, fn -> Tether.Type.to_wire([@p], versions: %{"edges.Point" => bad}) end
        assert e.message =~ msg
        assert_raise ArgumentError, ~r/invalid option :versions:/, fn ->
          Tether.Type.encode([@p], versions: %{"edges.Point" => bad})
        end

        e = assert_raise ArgumentError, fn -> Tether.encode([@p], type_versions: %{"edges.Point" => bad}) end
        assert e.message =~ ~s(invalid option :type_versions: "edges.Point" => #{inspect(bad)})

        path = Path.join(Tether.TestPython.tmp_dir!(), "s.tthrs")
        assert {:error, {:bad_option, :type_versions, why}} =
                 Tether.Stream.write([[@p]], path, type_versions: %{"edges.Point" => bad})
        assert why =~ "a version is an integer"
      end
    end

    test "an atom for a type name is refused with the string to write" do
      e = assert_raise ArgumentError, fn -> Tether.Type.encode([@p], versions: %{"edges.Point": 2}) end
      assert e.message =~ ~s(the key :"edges.Point" is an atom; type names are strings, as Python's are: ) <>
                            ~s(write "edges.Point" => 2)

      e = assert_raise ArgumentError, fn -> Tether.encode([@p], type_versions: %{Point => 2}) end
      assert e.message =~ ~s(the key TetherTypeEdgesTest.Point is an atom) and e.message =~ ~s(write "edges.Point" => 2)

      e = assert_raise ArgumentError, fn -> Tether.Type.to_wire([@p], versions: %{Enum => 2}) end
      assert e.message =~ "write the type's name (its use Tether.Type name:)"

      assert {:error, {:bad_option, :versions, _}} = :tether_options.versions(:versions, %{1 => 2})
      assert {:ok, %{versions: %{"any.Name" => 2}}} = :tether_options.versions(:versions, %{"any.Name" => 2})
    end

    test "Erlang's to_wire/2 refuses a version that is not an integer, in words" do
      assert {:error, {:type_downgrade, "edges.Point", "2", 2} = reason} =
               :tether_etf.to_wire([@p], %{"edges.Point" => "2"})
      assert Tether.Type.format_error(reason) =~ ~s(version "2", which is not a version)
      assert {:error, {:type_downgrade, "edges.Point", 2.0, 2}} = :tether_etf.to_wire([@p], %{"edges.Point" => 2.0})
    end
  end

  describe "use Tether.Type" do
    test "refuses the names Python refuses, at compile time" do
      for {name, words} <- [{"Elixir.Foo", ~s(starts with "Elixir.")}, {"", "is empty"}, {<<255>>, "is not valid UTF-8"}] do
        e =
          assert_raise ArgumentError, fn ->
            Code.compile_quoted(
              quote do
                defmodule TetherTypeEdgesTest.BadName do
                  use Tether.Type, name: unquote(name)
                  defstruct [:a]
                end
              end
            )
          end

        assert e.message =~ "use Tether.Type: the name #{inspect(name)} #{words}"
      end
    end
  end

  describe "a step that fails says which one and how to fix it" do
    test "a migrate step that returns the wrong shape" do
      assert {:error, {:type_failed, "edges.Shapeless", :from_wire, :function_clause} = reason} =
               roundtrip([wire(2, %{a: 1}, "edges.Shapeless")])

      msg = Tether.Type.format_error(reason)
      assert msg =~ "Type edges.Shapeless (TetherTypeEdgesTest.Shapeless): from_wire/1 has no clause"
      assert msg =~ "at version 3, this node's" and msg =~ "a migrate/2 step returned the wrong shape"
    end

    test "a missing migrate/2" do
      assert {:error, {:type_failed, "edges.NoMigrate", {:migrate, 1}, :undef} = reason} =
               roundtrip([wire(1, %{a: 1}, "edges.NoMigrate")])

      assert Tether.Type.format_error(reason) =~
               "the migrate(1, wire) step is undefined (no migrate/2 clauses, or a function one calls does not " <>
                 "exist). Its oldest: is below version:, so that step runs: add migrate(1, wire) returning " <>
                 "version 2's wire value, or raise oldest: to 2."

      assert Tether.Type.format_error({:type_failed, "edges.X", {:downgrade, 3}, :undef}) =~
               "add downgrade(3, wire) returning version 2's wire value, or raise oldest_writable: to 3."

      assert %Tether.Error{reason: reason} |> Exception.message() =~ "the migrate(1, wire) step is undefined"
    end
  end
end
