defmodule Tether.Type do
  @moduledoc """
  Versioned user types, shared with Python's `tether.types.register_type`.

  A type is a struct with a name and a version. The name is a non-empty
  UTF-8 string not starting with `Elixir.`, as Python's `register_type`
  requires (`use Tether.Type` refuses others when it compiles). On the wire (in etf frames,
  both directions) it is this struct, `%Tether.Type{}`, which Elixir code can
  pattern-match as it is:

      %Tether.Type{name: "acme.Point", version: 3, value: %{x: 1.0, y: 2.0, z: 0.0}}

  `value` is what the type's `c:to_wire/1` returns. A reader that meets an
  older version migrates it one step at a time (`c:migrate/2`: 1 → 2 → 3)
  before `c:from_wire/1`; a newer version than it knows is the error
  `{:newer_type, name, found, known}`. A writer told that its reader knows
  only an older version (`versions: %{"acme.Point" => 2}`) writes that
  version through `c:downgrade/2`, or fails with
  `{:type_downgrade, name, wanted, oldest_writable}`.

      defmodule Acme.Point do
        use Tether.Type, name: "acme.Point", version: 3, oldest: 1, oldest_writable: 2
        defstruct x: 0.0, y: 0.0, z: 0.0

        @impl true
        def migrate(1, %{lon: x, lat: y}), do: %{x: x, y: y}
        def migrate(2, wire), do: Map.put(wire, :z, 0.0)

        @impl true
        def downgrade(3, wire), do: Map.delete(wire, :z)
      end

      Tether.Type.register(Acme.Point)
      frame = Tether.Type.encode(%Acme.Point{x: 1.0})
      {:ok, %Acme.Point{x: 1.0}} = Tether.decode(frame)

  The defaults: `to_wire/1` is the struct's fields as a map with atom keys
  (Python's `register_type` writes a dict's `str` keys as atoms too), and
  `from_wire/1` builds the struct from such a map (binary keys are accepted
  when they name a field). As Python's default (`cls(**wire)`), it refuses a
  key that names no field, rather than drop its value: the writer's type has
  a field this node's lacks at the same version. Missing fields take the
  struct's defaults, and `@enforce_keys` are enforced. Registered types are
  decoded by every etf frame `Tether.decode/2` reads; `encode/2` (and
  `to_wire/2`) writes them.
  """

  defstruct [:name, :version, :value]

  @typedoc "The wire form of a versioned user type."
  @type t :: %__MODULE__{name: String.t(), version: pos_integer(), value: term()}

  @doc "The wire term at the type's current version."
  @callback to_wire(struct()) :: term()
  @doc "The struct from the wire term at the type's current version."
  @callback from_wire(term()) :: struct()
  @doc "One step up: the wire term of version `from` as version `from + 1`."
  @callback migrate(from :: pos_integer(), term()) :: term()
  @doc "One step down: the wire term of version `from` as version `from - 1`."
  @callback downgrade(from :: pos_integer(), term()) :: term()
  @optional_callbacks migrate: 2, downgrade: 2

  @doc false
  defmacro __using__(opts) do
    name = Keyword.fetch!(opts, :name)
    version = Keyword.get(opts, :version, 1)
    oldest = Keyword.get(opts, :oldest, version)
    writable = Keyword.get(opts, :oldest_writable, version)

    unless is_binary(name) and is_integer(version) and version >= 1 and oldest in 1..version//1 and
             writable in 1..version//1 do
      raise ArgumentError,
            "use Tether.Type needs name: a string, version: an integer >= 1, and oldest/oldest_writable " <>
              "between 1 and version; got #{inspect(opts)}"
    end

    check_name!(name)

    quote do
      @behaviour Tether.Type

      @doc false
      def __tether_type__,
        do: %{name: unquote(name), version: unquote(version), oldest: unquote(oldest),
              oldest_writable: unquote(writable)}

      @impl Tether.Type
      def to_wire(struct), do: Map.from_struct(struct)

      @impl Tether.Type
      def from_wire(wire), do: Tether.Type.build(__MODULE__, wire)

      defoverridable to_wire: 1, from_wire: 1
    end
  end

  # Python's rule (register_type, docs/format.md 6.1): a name Python refuses would never meet its type there.
  defp check_name!(name) do
    why =
      cond do
        name == "" -> "is empty"
        String.starts_with?(name, "Elixir.") -> "starts with \"Elixir.\", which names Elixir modules, not types"
        not String.valid?(name) -> "is not valid UTF-8"
        true -> nil
      end

    if why do
      raise ArgumentError,
            "use Tether.Type: the name #{inspect(name)} #{why}; a type name is a non-empty UTF-8 string " <>
              "not starting with \"Elixir.\", the same in Python's register_type, such as \"acme.Point\""
    end
  end

  @doc """
  Register type modules (one or a list), so frames decode to them and
  `encode/2` writes them. The last registration of a name wins.

      :ok = Tether.Type.register([Acme.Point])
  """
  @spec register(module() | [module()]) :: :ok
  def register(mods) when is_list(mods), do: Enum.each(mods, &register/1)
  def register(mod) when is_atom(mod), do: :tether_etf.register_type(mod)

  @doc """
  Forget a registered type module: frames decode its wire form as
  `%Tether.Type{}` again, and `encode/2` writes its structs as they are, not
  in wire form.

      :ok = Tether.Type.unregister(Acme.Point)
  """
  @spec unregister(module()) :: :ok
  def unregister(mod), do: :tether_etf.unregister_type(mod)

  @doc """
  The version of every registered type, by name: what this node reads, for a
  worker handshake.

      :ok = Tether.Type.register(Acme.Point)
      %{"acme.Point" => 3} = Tether.Type.versions()
  """
  @spec versions() :: %{String.t() => pos_integer()}
  def versions, do: :tether_etf.type_versions()

  @doc """
  Registered structs inside `term` as their wire form. Options:
  `versions: %{name => version}`, the newest version of each type the reader
  reads: names are strings and versions integers, or it raises
  `ArgumentError` naming the entry (as a bad option does).

      {:ok, %Tether.Type{version: 2}} = Tether.Type.to_wire(%Acme.Point{}, versions: %{"acme.Point" => 2})
  """
  @spec to_wire(term(), keyword() | map()) :: {:ok, term()} | {:error, :tether_etf.type_error()}
  def to_wire(term, opts \\ []) do
    case versions(opts, "to_wire/2") do
      {versions, rest} when rest == %{} ->
        :tether_etf.to_wire(term, versions)

      {_, rest} ->
        raise ArgumentError,
              "Tether.Type.to_wire/2: unknown option(s) #{inspect(Map.keys(rest))}: it takes versions: only"
    end
  end

  @doc """
  Wire terms of registered types inside `term` as their structs, migrated.
  `Tether.decode/2` does this for every etf frame.

      {:ok, %Acme.Point{}} = Tether.Type.from_wire(%Tether.Type{name: "acme.Point", version: 1, value: %{lon: 0.0, lat: 0.0}})
  """
  @spec from_wire(term()) :: {:ok, term()} | {:error, :tether_etf.type_error()}
  def from_wire(term), do: :tether_etf.from_wire(term)

  @doc """
  An etf frame of `term` with its registered structs in wire form. Options:
  `versions:` (see `to_wire/2`) and every option of `Tether.encode/2`.
  Raises `ArgumentError` when a type cannot be written for its reader.

      frame = Tether.Type.encode([%Acme.Point{x: 1.0}], versions: %{"acme.Point" => 2})
  """
  @spec encode(term(), keyword() | map()) :: iodata()
  def encode(term, opts \\ []) do
    {versions, opts} = versions(opts, "encode/2")

    case :tether_etf.to_wire(term, versions) do
      {:ok, wire} -> Tether.encode(wire, opts)
      {:error, reason} -> raise ArgumentError, format_error(reason)
    end
  end

  # `versions:` out of a keyword list or map of options, and the rest, as Tether.encode/2 takes them.
  defp versions(opts, fun) when is_map(opts) or is_list(opts) do
    unless is_map(opts) or Enum.all?(opts, &match?({k, _} when is_atom(k), &1)) do
      raise ArgumentError, "Tether.Type.#{fun}: options must be a keyword list or a map, got #{inspect(opts)}"
    end

    {versions, rest} = opts |> Map.new() |> Map.pop(:versions, %{})

    unless is_map(versions) or is_list(versions) do
      raise ArgumentError, "Tether.Type.#{fun}: versions: must be a map of type names to versions, got " <>
                             inspect(versions, limit: 10)
    end

    versions = Map.new(versions)

    case :tether_options.versions(:versions, versions) do
      {:ok, _} -> {versions, rest}
      {:error, reason} -> Tether.Options.raise!({:versions, :versions}, versions, reason)
    end
  end

  defp versions(opts, fun),
    do: raise(ArgumentError, "Tether.Type.#{fun}: options must be a keyword list or a map, got #{inspect(opts)}")

  @doc """
  A sentence for a type error of `from_wire/1`, `to_wire/2` or `Tether.decode/2`.

      "Type acme.Point arrived at version 4" <> _ = Tether.Type.format_error({:newer_type, "acme.Point", 4, 3})
  """
  @spec format_error(term()) :: String.t()
  def format_error({:newer_type, name, found, known}),
    do: "Type #{name} arrived at version #{found}; this node knows up to version #{known}. Upgrade this " <>
          "node's #{name} to version #{found}, or have the writer send version #{known} " <>
          "(Python: options={'versions': {'types': {'#{name}': #{known}}}})."

  def format_error({:old_type, name, found, _oldest}) when found < 1,
    do: "Type #{name} arrived at version #{found}, which no writer makes (versions start at 1): the term " <>
          "was not written by Tether.Type or tether.types, or was altered."

  def format_error({:old_type, name, found, oldest}),
    do: "Type #{name} arrived at version #{found}; this node migrates from version #{oldest}. " <>
          "Add migrate/2 clauses from #{found} (and set oldest: #{found})."

  def format_error({:type_downgrade, name, wanted, _oldest}) when not is_integer(wanted),
    do: "Type #{name} was asked for at version #{inspect(wanted)}, which is not a version: versions are " <>
          "integers (the newest the reader reads), e.g. versions: %{#{inspect(name)} => 2}."

  def format_error({:type_downgrade, name, wanted, _oldest}) when wanted < 1,
    do: "Type #{name} was asked for at version #{wanted}, which no reader reads (versions start at 1): " <>
          "check the versions: (or type_versions:) option given."

  def format_error({:type_downgrade, name, wanted, oldest}),
    do: "The reader knows type #{name} up to version #{wanted}; this node downgrades only to #{oldest}. " <>
          "Upgrade the reader's #{name} to #{oldest} or later, or give this node's type downgrade/2 clauses " <>
          "down to version #{wanted} and set oldest_writable: #{wanted} in its use Tether.Type."

  def format_error({:type_failed, name, {kind, from}, :function_clause}) when kind in [:migrate, :downgrade] do
    to = if kind == :migrate, do: from + 1, else: from - 1

    "Type #{name}: no #{kind}/2 clause matched version #{from}'s wire value. Add a clause " <>
      "#{kind}(#{from}, wire) that returns version #{to}'s, matching the value as that version's writers send it."
  end

  def format_error({:type_failed, name, {kind, from}, :undef}) when kind in [:migrate, :downgrade] do
    {to, bound, raised} =
      if kind == :migrate, do: {from + 1, "oldest", from + 1}, else: {from - 1, "oldest_writable", from}

    "Type #{name}#{module_text(name)}: the #{kind}(#{from}, wire) step is undefined (no #{kind}/2 clauses, " <>
      "or a function one calls does not exist). Its #{bound}: is below version:, so that step runs: add " <>
      "#{kind}(#{from}, wire) returning version #{to}'s wire value, or raise #{bound}: to #{raised}."
  end

  def format_error({:type_failed, name, :from_wire, reason}) when reason in [:function_clause, :undef] do
    mod = module_text(name)

    case reason do
      :function_clause ->
        "Type #{name}#{mod}: from_wire/1 has no clause for the wire value it got#{at_version(name)}. Most " <>
          "likely a migrate/2 step returned the wrong shape (each migrate(v, wire) must return version v+1's " <>
          "wire value, as to_wire/1 writes it there), or the writer sent another shape: fix that step, or " <>
          "make from_wire/1 match the value."

      :undef ->
        "Type #{name}#{mod}: from_wire/1 called a function that does not exist; the default one needs the " <>
          "module's defstruct: add it, or override from_wire/1."
    end
  end

  def format_error({:type_failed, name, :map_key, {:same_key, dir}}) do
    {what, fix} =
      if dir == :read,
        do: {"read at this node's version", "make the migrate/2 steps keep such values apart"},
        else: {"written at the reader's version", "write for a reader that knows a newer version"}

    "Type #{name}: two keys of one map (or two members of one MapSet) become the same value once " <>
      "#{what}, and one would be lost: #{fix}, or hold the values in a list."
  end

  def format_error({:type_failed, name, step, reason}),
    do: "Type #{name}: the #{inspect(step)} step failed: #{reason_text(reason)}"

  def format_error({:bad_type_term, why}), do: "A Tether.Type term is malformed: #{why}"

  def format_error(other), do: inspect(other)

  # The registered module and version of a name, when it is registered: the place to fix.
  defp module_text(name) do
    case :tether_etf.registered_types() do
      %{^name => mod} -> " (#{inspect(mod)})"
      _ -> ""
    end
  end

  defp at_version(name) do
    case :tether_etf.type_versions() do
      %{^name => v} -> " at version #{v}, this node's"
      _ -> ""
    end
  end

  defp reason_text(%{__exception__: true} = e), do: Exception.message(e)
  defp reason_text(reason), do: inspect(reason)

  @doc false
  # The default from_wire/1: a struct from a map whose keys (atoms, or binaries naming them) are its fields.
  def build(mod, wire) when is_map(wire) do
    fields = mod.__struct__() |> Map.delete(:__struct__)

    case Enum.split_with(wire, fn {k, _} -> is_map_key(fields, key_atom(k)) end) do
      {known, []} ->
        struct!(mod, Enum.map(known, fn {k, v} -> {key_atom(k), v} end))

      {_, unknown} ->
        keys = unknown |> Enum.map(&elem(&1, 0)) |> Enum.take(10)

        raise ArgumentError,
              "the wire value has #{length(unknown)} key(s) that #{inspect(mod)} has no field for: " <>
                "#{inspect(keys, limit: 10, printable_limit: 80)}. The writer's type has fields this " <>
                "node's lacks at the same version: upgrade this node's #{inspect(mod)}, or give the writer " <>
                "a new version with a downgrade step, or override from_wire/1 to drop them."
    end
  end

  defp key_atom(k) when is_atom(k), do: k

  defp key_atom(k) when is_binary(k) do
    String.to_existing_atom(k)
  rescue
    ArgumentError -> nil
  end

  defp key_atom(_), do: nil
end
