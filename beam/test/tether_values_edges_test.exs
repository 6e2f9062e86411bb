defmodule Tether.ValuesEdgesTest do
  # Values at the edges (cycles, generators, argument paths, Date and Time columns), seen from Elixir against a real `python -m tether.worker` (make test sets TETHER_PYTHON).
  use ExUnit.Case, async: false
  alias Tether.TestPython

  @m "edges_beam_handlers"
  @handlers """
  import datetime as dt

  import pyarrow as pa


  def schema(table):
      return [[f.name, str(f.type)] for f in table.schema]


  def dates():
      return pa.table({"d": pa.array([dt.date(2024, 1, 1), None], pa.date32()),
                       "t": pa.array([dt.time(10, 11, 12, 500000), None], pa.time64("us"))})


  def loop():
      value = []
      value.append(value)
      return value


  def steps(n):
      for _ in range(n):
          yield {"i": 1}


  def echo(value):
      return value


  def improper_kinds(value):
      return [type(x).__name__ for x in value.items] + [type(value.tail).__name__]

  """

  setup do
    dir = TestPython.tmp_dir!()
    File.write!(Path.join(dir, "#{@m}.py"), @handlers)
    opts = TestPython.opts(modules: [@m], env: [{"PYTHONPATH", TestPython.pythonpath([dir])}])
    {:ok, w} = Tether.Worker.start_link(opts)
    on_exit(fn -> TestPython.stop(w) end)
    %{w: w}
  end

  test "ranges past 2**63 - 1 elements, and empty ones, come back as they went", %{w: w} do
    # Sending a huge one back raised OverflowError (len of a range); an empty one came back 5..4//1.
    for range <- [0..9_223_372_036_854_775_808, 5..1//1, 1..0//1, 12..7//1, 3..10//-2, -5..5//5] do
      assert {:ok, ^range} = Tether.Worker.call(w, @m, "echo", [range])
    end
  end

  test "a map key or MapSet member of 64 KiB or more arrives and comes back", %{w: w} do
    # From 64 KiB to the shared-memory threshold it was a view of the worker's writable read buffer, which
    # Python cannot hash: {:bad_request, "Map key cannot be hashed ..."}.
    big = :binary.copy("a", 65_536)
    for value <- [%{big => 1}, %{[big] => 2}, MapSet.new([big])] do
      assert {:ok, ^value} = Tether.Worker.call(w, @m, "echo", [value])
    end
  end

  test ":nan and the infinities inside an improper list arrive as floats and come back as atoms", %{w: w} do
    # Python's walks stopped at improper lists: the handler got Atom('nan'), and a NaN it returned there
    # failed the call with advice about map keys.
    value = [:nan, 1.5 | :neg_infinity]
    assert {:ok, ["float", "float", "float"]} = Tether.Worker.call(w, @m, "improper_kinds", [value])
    assert {:ok, ^value} = Tether.Worker.call(w, @m, "echo", [value])
  end

  test "a map with one key twice (a Python dict with a str and a bytes of the same content) is named as a cause" do
    payload = <<131, 116, 2::32, 109, 1::32, "a", 97, 1, 109, 1::32, "a", 97, 2>>
    frame = :tether_frame.build(4, "etf", %{"binaries" => "tagged"}, payload, %{}) |> IO.iodata_to_binary()
    assert {:error, {:bad_etf, why}} = Tether.decode(frame)
    assert why =~ "a map in it holds one key twice (from Python: a dict or set with a str and a bytes"
  end

  test "a scalar frame of NaN or an infinity decodes to the atoms, as in etf frames" do
    # Python's dumps(float('nan'), reader='beam') writes a scalar frame: it was {:error, {:bad_scalar, "float"}}.
    for {bits, atom} <- [{<<0, 0, 0, 0, 0, 0, 248, 127>>, :nan}, {<<0, 0, 0, 0, 0, 0, 240, 127>>, :infinity},
                         {<<0, 0, 0, 0, 0, 0, 240, 255>>, :neg_infinity}, {<<1, 0, 0, 0, 0, 0, 240, 255>>, :nan}] do
      frame = :tether_frame.build(2, "scalar", %{"kind" => "float"}, bits, %{}) |> IO.iodata_to_binary()
      assert {:ok, ^atom} = Tether.decode(frame)
    end
  end

  test "Date and Time columns of Tether.table/1 arrive as date32 and time64", %{w: w} do
    # It was {:bad_request, "$[0]: Column 'd' holds date; Arrow needs one kind per column ..."}.
    rows = [%{"d" => ~D[2024-01-01], "t" => ~T[10:11:12.500000], "n" => 1}, %{"d" => nil, "t" => nil, "n" => 2}]
    assert {:ok, types} = Tether.Worker.call(w, @m, "schema", [Tether.table(rows)])
    assert Map.new(types, fn [name, type] -> {name, type} end) ==
             %{"d" => "date32[day]", "t" => "time64[us]", "n" => "int64"}
    columns = %{"d" => [~D[2024-02-29]], "t" => [~T[00:00:01.000000]]}
    assert {:ok, [["d", "date32[day]"], ["t", "time64[us]"]]} =
             Tether.Worker.call(w, @m, "schema", [Tether.table(columns)])
  end

  test "date32 and time64 columns come back as Dates and Times", %{w: w} do
    assert {:ok, [%{"d" => ~D[2024-01-01], "t" => ~T[10:11:12.500000]}, %{"d" => nil, "t" => nil}]} =
             Tether.Worker.call(w, @m, "dates", [], tables: :rows)
  end

  test "a reply that contains itself is an EncodeError within a second", %{w: w} do
    {us, reply} = :timer.tc(fn -> Tether.Worker.call(w, @m, "loop", []) end)
    assert {:error, {:python, "EncodeError", "EncodeError: $[0] contains itself; a reply must be a finite term.", _}} =
             reply
    assert us < 1_000_000
  end

  test "a generator is not awaited: an EncodeError says to return a list", %{w: w} do
    assert {:error, {:python, "EncodeError", message, _}} = Tether.Worker.call(w, @m, "steps", [3])
    assert message =~ "builtins.generator at $" and message =~ "return list(it)"
  end

  test "an argument's map keys that collide are named by the argument's path", %{w: w} do
    assert {:error, {:bad_request, message}} = Tether.Worker.call(w, @m, "echo", [[1, %{1 => 1, 1.0 => 2}]])
    assert message =~ "treats as equal at $[0][1] (offset"
  end
end
