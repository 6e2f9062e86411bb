defmodule TetherWireTest do
  # The modules behind :tether: the wire tables, the frame header, regions,
  # bounded gzip, and the golden frames of both languages.
  use ExUnit.Case, async: true

  @golden Path.expand("../../tests/golden", __DIR__)

  defp tables, do: :tether_wire.tables()

  defp field(bin, layout, name) do
    {_, offset, size} = List.keyfind(layout, name, 0)
    binary_part(bin, offset, size)
  end

  defp uint(bin, layout, name) do
    raw = field(bin, layout, name)
    :binary.decode_unsigned(raw, :little)
  end

  # A header with one field replaced and its CRC-32 recomputed.
  defp patch(frame, name, value) do
    layout = tables()["header"]
    {_, offset, size} = List.keyfind(layout, name, 0)
    <<pre::binary-size(offset), _::binary-size(size), post::binary>> = frame
    frame = <<pre::binary, value::little-size(size)-unit(8), post::binary>>
    {_, crc_at, _} = List.keyfind(layout, "header_crc32", 0)
    <<covered::binary-size(crc_at), _::32, rest::binary>> = frame
    <<covered::binary, :erlang.crc32(covered)::32-little, rest::binary>>
  end

  test "tables: layouts are contiguous, ids unique, sizes add up" do
    t = tables()

    for {layout, size} <- [{t["header"], t["header_size"]}, {t["region"]["slot"], t["region"]["slot_size"]}] do
      {ends, total} = Enum.map_reduce(layout, 0, fn {_, offset, width}, at -> {offset == at, at + width} end)
      assert Enum.all?(ends) and total == size
    end

    {_, last, width} = List.last(t["region"]["header"])
    assert t["region"]["slots"] == div(t["region"]["header_size"] - (last + width), t["region"]["slot_size"])
    assert {"magic", 0, byte_size(t["magic"])} == hd(t["header"])
    assert {"magic", 0, byte_size(t["region"]["magic"])} == hd(t["region"]["header"])

    for key <- ["formats", "compressions", "checksums", "filters"] do
      ids = Map.values(t[key])
      assert length(Enum.uniq(ids)) == length(ids)
    end
  end

  test "the header a frame carries reads back at the table's offsets" do
    t = tables()
    layout = t["header"]

    for {frame, format, checksum} <- [
          {Tether.encode(%{a: 1}, metadata: %{"k" => "v"}), "etf", "crc32"},
          {Tether.encode("bytes", format: :raw, checksum: :none), "raw", "none"},
          {Tether.tensor(<<1, 2, 3, 4>>, {:u, 8}, {4}), "ndarray", "crc32"}
        ] do
      frame = IO.iodata_to_binary(frame)
      {:ok, h} = :tether.inspect(frame)
      assert field(frame, layout, "magic") == t["magic"]
      assert uint(frame, layout, "version") == t["frame_version"]
      assert uint(frame, layout, "header_size") == t["header_size"]
      assert uint(frame, layout, "format_id") == t["formats"][format] and h.format_id == t["formats"][format]
      assert Atom.to_string(h.format) == format and Atom.to_string(h.checksum) == checksum
      assert uint(frame, layout, "checksum_kind") == t["checksums"][checksum]
      assert uint(frame, layout, "compression_id") == t["compressions"]["none"] and h.compression == :none
      assert uint(frame, layout, "flags") == 0
      assert uint(frame, layout, "metadata_length") == h.meta_len
      assert uint(frame, layout, "payload_length") == h.payload_size and h.raw_size == h.payload_size
      assert uint(frame, layout, "payload_checksum") == h.checksum_value
      assert uint(frame, layout, "schema_version") == h.schema
      assert {uint(frame, layout, "filter_id"), uint(frame, layout, "filter_size")} == h.filter
      assert field(frame, layout, "reserved") == <<0::56>>
      crc_covers = t["header_size"] - 4
      assert uint(frame, layout, "header_crc32") == :erlang.crc32(binary_part(frame, 0, crc_covers))
      assert uint(frame, layout, "metadata_crc32") == :erlang.crc32(binary_part(frame, t["header_size"], h.meta_len))
      assert rem(h.payload_offset, t["align"]) == 0 and h.frame_size == byte_size(frame)
    end
  end

  test "flags: stream chunks and optional bits pass, unknown required bits are refused" do
    t = tables()
    frame = Tether.encode([1, 2]) |> IO.iodata_to_binary()
    assert {:ok, [1, 2]} = Tether.decode(patch(frame, "flags", t["flags"]["stream_chunk"]))
    assert {:ok, [1, 2]} = Tether.decode(patch(frame, "flags", Bitwise.bsl(1, 16)))
    assert {:error, {:unsupported_flags, 2}} = Tether.decode(patch(frame, "flags", 2))
    assert {:error, {:unsupported_frame_version, 2, _}} = Tether.decode(patch(frame, "version", 2))
    # The same bytes with a stale header checksum: a flipped bit, not a newer tether.
    {_, crc_at, _} = List.keyfind(tables()["header"], "header_crc32", 0)
    stale = fn patched -> binary_part(patched, 0, crc_at) <> binary_part(frame, crc_at, byte_size(frame) - crc_at) end
    assert {:error, {:header_checksum_mismatch, _, _}} = Tether.decode(stale.(patch(frame, "version", 3)))
    assert {:error, {:header_checksum_mismatch, _, _}} = Tether.decode(stale.(patch(frame, "header_size", 65)))
    assert {:error, {:bad_header_size, 65, _}} = Tether.decode(patch(frame, "header_size", 65))
    assert {:error, {:unsupported_filter, {1, 4}}} =
             Tether.decode(patch(patch(frame, "filter_id", t["filters"]["byte-shuffle"]), "filter_size", 4))
    assert {:error, {:unsupported_compression, :lz4, _}} =
             Tether.decode(patch(frame, "compression_id", t["compressions"]["lz4"]))
    assert {:ok, %{format: {:unknown, 99}}} = Tether.inspect(patch(frame, "format_id", 99))
    assert {:error, {:unsupported_format, {:unknown, 99}}} = Tether.decode(patch(frame, "format_id", 99))
  end

  defp region(path, latest, slots) do
    r = tables()["region"]
    head = Enum.map(r["header"], fn
      {"magic", _, _} -> r["magic"]
      {"version", _, s} -> <<r["version"]::little-size(s)-unit(8)>>
      {"header_size", _, s} -> <<r["header_size"]::little-size(s)-unit(8)>>
      {"slot_count", _, s} -> <<r["slots"]::little-size(s)-unit(8)>>
      {"latest", _, s} -> <<latest::little-size(s)-unit(8)>>
      {_, _, s} -> <<0::size(s)-unit(8)>>
    end)
    table = for i <- 0..(r["slots"] - 1) do
      {offset, len, seq} = Map.get(slots, i, {0, 0, 0})
      for {name, _, s} <- r["slot"], into: <<>> do
        value = %{"offset" => offset, "length" => len, "seq" => seq, "reserved" => 0}[name]
        <<value::little-size(s)-unit(8)>>
      end
    end
    File.write!(path, [head, table])
  end

  test "regions: the newest committed slot, built from the table's layout" do
    dir = Tether.TestPython.tmp_dir!()
    r = tables()["region"]
    path = Path.join(dir, "region")
    frame = Tether.encode(%{"n" => 1}) |> IO.iodata_to_binary()
    at = r["header_size"]
    region(path, 2, %{0 => {at, 3, 2}, 1 => {at, byte_size(frame), 4}})
    File.write!(path, frame, [:append])
    assert {:ok, ^frame} = Tether.read_region(path)
    assert {:ok, "TTH"} = :tether.read_frame(path, at, 3)
    assert {:error, {:truncated, 10_000, _}} = :tether.read_frame(path, at, 10_000)

    region(path, 1, %{0 => {at, byte_size(frame), 3}})
    assert {:error, :no_committed_frame} = Tether.read_region(path)
    region(path, 0, %{})
    assert {:error, :no_committed_frame} = Tether.read_region(path)
    File.write!(path, "not a region")
    assert {:error, :not_a_tether_region} = Tether.read_region(path)
    assert {:error, :enoent} = Tether.read_region(Path.join(dir, "missing"))
  end

  test "gzip inflates to exactly the declared size, never past it" do
    data = :binary.copy("tether", 10_000)
    gz = :zlib.gzip(data)
    assert {:ok, ^data} = :tether_gzip.inflate(gz, byte_size(data))
    # Stops once past the bound. The reason is {:bad_gzip, :data_error} today, not
    # {:decompressed_too_large, _}: inflateEnd refuses the unfinished stream.
    assert {:error, _} = :tether_gzip.inflate(gz, 100)
    assert {:error, {:decompressed_size_mismatch, 70_000, 60_000}} = :tether_gzip.inflate(gz, 70_000)
    assert {:error, {:bad_gzip, _}} = :tether_gzip.inflate("not gzip", 10)
  end

  test "frames the BEAM wrote once (tests/golden/beam) still decode" do
    read = fn name -> File.read!(Path.join([@golden, "beam", name <> ".tthr"])) end
    assert {:ok, term} = Tether.decode(read.("etf_term"))
    assert term == %{"id" => 1, tags: [:a, :b], pos: {1, 2.5}, name: "n",
                     nested: %{k: [<<0, 255>>, -7, Bitwise.bsl(1, 70), [], {}]}, ok: true, none: nil}
    assert {:ok, Enum.to_list(1..1000)} == Tether.decode(read.("etf_compressed"))
    assert {:ok, {:reply, 3, {:ok, ["x", 1.5]}}} == Tether.decode(read.("etf_no_checksum"))
    assert {:ok, :binary.list_to_bin(Enum.to_list(0..255))} == Tether.decode(read.("raw_bytes"))
    {:ok, t} = Tether.decode(read.("ndarray_f32"))
    assert {t.type, t.shape, t.data} == {{:f, 32}, {2, 3}, for(x <- 1..6, into: <<>>, do: <<x * 1.0::float-32-little>>)}
    {:ok, t} = Tether.decode(read.("ndarray_s64"))
    assert {t.type, t.shape, t.data} == {{:s, 64}, {3}, <<-1::64-little-signed, 2::64-little, -3::64-little-signed>>}
    {:ok, t} = Tether.decode(read.("ndarray_bf16"))
    assert {t.type, t.shape, t.data} == {{:bf, 16}, {2}, <<0x3F80::16-little, 0xC000::16-little>>}
    {:ok, info} = Tether.inspect(read.("ndarray_f32"))
    assert info.metadata["user"] == %{"unit" => "m"} and info.metadata["producer"] == "tether-beam/0.1.0"
  end

  # Every frame of a file: a .tthrs stream holds several, back to back.
  defp frames(<<>>), do: []

  defp frames(bin) do
    {:ok, %{frame_size: size}} = Tether.inspect(bin)
    <<frame::binary-size(size), rest::binary>> = bin
    [frame | frames(rest)]
  end

  @unreadable [:unsupported_compression, :unsupported_filter, :unsupported_format]

  test "frames Python wrote (tests/golden) decode when the BEAM can read them, else a clear error" do
    # Atoms the golden terms name, so safe decoding finds them.
    _ = [:id, :name, :tags, :x, :t]
    files = Path.wildcard(Path.join(@golden, "*.{tthr,tthrs}"))
    assert files != []

    for path <- files, frame <- frames(File.read!(path)) do
      {:ok, h} = Tether.inspect(frame)
      readable = h.compression in [:none, :gzip] and elem(h.filter, 0) == 0 and
                   h.format in [:raw, :scalar, :ndarray, :etf, :arrow, :sparse]

      case {h.checksum in [:crc32, :none], readable} do
        {true, true} ->
          assert {:ok, _} = Tether.decode(frame), path

        {false, _} ->
          assert {:error, {:unverifiable_checksum, _, msg}} = Tether.decode(frame), path
          assert msg =~ "crc32"

        {true, false} ->
          assert {:error, reason} = Tether.decode(frame), path
          assert elem(reason, 0) in @unreadable
      end

      if readable do
        assert {:ok, _} = Tether.decode(frame, verify: false), path
      else
        assert {:error, reason} = Tether.decode(frame, verify: false), path
        assert elem(reason, 0) in @unreadable
      end
    end

    read = fn name -> Tether.decode(File.read!(Path.join(@golden, name <> ".tthr")), verify: false) end
    assert {:ok, 2.5} = read.("scalar_float")
    assert {:ok, :binary.copy(<<0, "golden", 255>>, 3)} == read.("raw_bytes")
    assert {:ok, [[1, 2 | :t], Bitwise.bsl(1, 100), -1.5]} == read.("etf_improper")
    {:ok, t} = read.("ndarray_i8_F")
    assert {t.type, t.shape, t.dtype, t.order} == {:undefined, {2, 3}, ">i8", "F"}
    assert <<0::64, 3::64-big, _::binary>> = t.data
    assert {:error, {:unsupported_compression, :lz4, _}} = read.("ndarray_lz4")
  end
end
