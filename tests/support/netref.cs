// netref: the public surface of .NET assemblies as one JSON document on stdout.
//
// Why: the tests run on Debian, without Windows PowerShell, yet must know whether a
// .NET type or member that a rendered script uses exists in .NET Framework 4.8.
// netref.py compiles this with mcs and runs it with mono over the 4.8 reference
// assemblies that mono-devel installs. Mono.Cecil reads their metadata only: no
// assembly is loaded into the runtime, so mono's own (newer, different) class
// library never answers in their place.
//
// Usage: mono netref.exe ASSEMBLY.dll...
//
// Output (keys whose value would be false, empty or null are left out, except the
// parameter list of a method or constructor, written even when empty):
//   {"format": 1,
//    "assemblies": [{"name", "file"}],
//    "types": [{"name", "assembly", "kind", "base", "interfaces", "abstract", "static",
//               "enum", "constructors", "methods", "properties", "fields", "events"}]}
//   kind: class, struct, enum, interface or delegate. Names are as .NET's Type.FullName
//   writes a definition: nested types after '+', generic definitions with their
//   backtick arity. Base and member types name generic instances as Name`1<Arg,...>,
//   then '[]' for arrays, '&' for by-reference, '*' for pointers, and generic
//   parameters by their own name (T); interfaces are named by their definition only.
//   constructor: {"params"}; method: {"name", "static", "returns", "params",
//   "generic" (arity), "special" (accessor or operator), "extension"};
//   property: {"name", "static", "type", "get", "set", "params" (index)};
//   field: {"name", "static", "type", "literal", "readonly"}; event: {"name", "static", "type"};
//   parameter: {"name", "type", "optional", "params", "direction" (out or ref)}.
// Types and members are sorted (ordinal), so the same assemblies give the same bytes.

using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using Mono.Cecil;

static class NetRef
{
    static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("usage: netref.exe ASSEMBLY.dll...");
            return 2;
        }
        var assemblies = new List<string[]>();
        var types = new List<KeyValuePair<string, string>>();
        foreach (string path in args)
        {
            // Metadata only, read from a copy in memory: no file stays open, nothing is loaded.
            var stream = new MemoryStream(File.ReadAllBytes(path));
            var assembly = AssemblyDefinition.ReadAssembly(stream, new ReaderParameters(ReadingMode.Deferred));
            string name = assembly.Name.Name;
            assemblies.Add(new[] { name, Path.GetFileName(path) });
            // Definitions only: the exported (forwarded) types of the table are ignored,
            // so a forwarder never counts as a second home for a type.
            foreach (ModuleDefinition module in assembly.Modules)
                foreach (TypeDefinition type in module.Types)
                    AddPublicTypes(type, name, types);
        }
        assemblies.Sort((a, b) => string.CompareOrdinal(a[0], b[0]));
        types.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));

        var output = new StringBuilder();
        output.Append("{\"format\":1,\n\"assemblies\":[");
        for (int i = 0; i < assemblies.Count; i++)
        {
            var json = new Json();
            json.Str("name", assemblies[i][0]).Str("file", assemblies[i][1]);
            output.Append(i == 0 ? "\n" : ",\n").Append(json.Close());
        }
        output.Append("],\n\"types\":[");
        for (int i = 0; i < types.Count; i++)
            output.Append(i == 0 ? "\n" : ",\n").Append(types[i].Value);
        output.Append("]}\n");

        var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
        stdout.Write(output.ToString());
        stdout.Flush();
        return 0;
    }

    // A nested type is visible from outside only when it and every type around it are public.
    static void AddPublicTypes(TypeDefinition type, string assembly, List<KeyValuePair<string, string>> into)
    {
        if (!(type.IsPublic || type.IsNestedPublic))
            return;
        string name = TypeName(type);
        into.Add(new KeyValuePair<string, string>(name + " " + assembly, DescribeType(type, name, assembly)));
        foreach (TypeDefinition nested in type.NestedTypes)
            AddPublicTypes(nested, assembly, into);
    }

    static string DescribeType(TypeDefinition type, string name, string assembly)
    {
        var json = new Json();
        json.Str("name", name).Str("assembly", assembly).Str("kind", Kind(type));
        if (type.BaseType != null)
            json.Str("base", TypeName(type.BaseType));

        var interfaces = new List<string>();
        foreach (var implementation in type.Interfaces)
        {
#if CECIL_09
            TypeReference iface = implementation;
#else
            TypeReference iface = implementation.InterfaceType;
#endif
            interfaces.Add(DefinitionName(iface));
        }
        interfaces.Sort(string.CompareOrdinal);
        json.StrList("interfaces", interfaces);
        json.Flag("abstract", type.IsAbstract && !type.IsInterface);
        json.Flag("static", type.IsAbstract && type.IsSealed);

        if (type.IsEnum)
        {
            // Metadata order is declaration order; sorted here like everything else.
            var names = new List<string>();
            foreach (FieldDefinition field in type.Fields)
                if (field.IsStatic && field.IsLiteral && field.IsPublic)
                    names.Add(field.Name);
            names.Sort(string.CompareOrdinal);
            json.StrList("enum", names);
        }

        var constructors = new List<KeyValuePair<string, string>>();
        var methods = new List<KeyValuePair<string, string>>();
        foreach (MethodDefinition method in type.Methods)
        {
            // Explicit interface implementations are private, protected members are
            // not callable from a script: both fall out here.
            if (!method.IsPublic)
                continue;
            if (method.IsConstructor)
            {
                if (!method.IsStatic)
                    constructors.Add(Keyed(Signature("", method.Parameters), DescribeConstructor(method)));
                continue;
            }
            methods.Add(Keyed(Signature(method.Name, method.Parameters) + TypeName(method.ReturnType),
                               DescribeMethod(method)));
        }
        json.Objects("constructors", Ordered(constructors));
        json.Objects("methods", Ordered(methods));

        var properties = new List<KeyValuePair<string, string>>();
        foreach (PropertyDefinition property in type.Properties)
        {
            bool get = property.GetMethod != null && property.GetMethod.IsPublic;
            bool set = property.SetMethod != null && property.SetMethod.IsPublic;
            if (get || set)
                properties.Add(Keyed(Signature(property.Name, property.Parameters), DescribeProperty(property, get, set)));
        }
        json.Objects("properties", Ordered(properties));

        var fields = new List<KeyValuePair<string, string>>();
        foreach (FieldDefinition field in type.Fields)
        {
            if (!field.IsPublic)
                continue;
            var item = new Json();
            item.Str("name", field.Name).Flag("static", field.IsStatic).Str("type", TypeName(field.FieldType))
                .Flag("literal", field.IsLiteral).Flag("readonly", field.IsInitOnly);
            fields.Add(Keyed(field.Name, item.Close()));
        }
        json.Objects("fields", Ordered(fields));

        var events = new List<KeyValuePair<string, string>>();
        foreach (EventDefinition e in type.Events)
        {
            if (e.AddMethod == null || !e.AddMethod.IsPublic)
                continue;
            var item = new Json();
            item.Str("name", e.Name).Flag("static", e.AddMethod.IsStatic).Str("type", TypeName(e.EventType));
            events.Add(Keyed(e.Name, item.Close()));
        }
        json.Objects("events", Ordered(events));
        return json.Close();
    }

    static string Kind(TypeDefinition type)
    {
        if (type.IsInterface)
            return "interface";
        if (type.IsEnum)
            return "enum";
        if (type.IsValueType)
            return "struct";
        if (type.BaseType != null && type.BaseType.FullName == "System.MulticastDelegate")
            return "delegate";
        return "class";
    }

    static string DescribeConstructor(MethodDefinition method)
    {
        var json = new Json();
        json.Objects("params", Parameters(method.Parameters), keepEmpty: true);
        return json.Close();
    }

    static string DescribeMethod(MethodDefinition method)
    {
        var json = new Json();
        json.Str("name", method.Name).Flag("static", method.IsStatic).Str("returns", TypeName(method.ReturnType));
        json.Objects("params", Parameters(method.Parameters), keepEmpty: true);
        if (method.HasGenericParameters)
            json.Int("generic", method.GenericParameters.Count);
        json.Flag("special", method.IsSpecialName);
        json.Flag("extension", HasAttribute(method, "System.Runtime.CompilerServices.ExtensionAttribute"));
        return json.Close();
    }

    static string DescribeProperty(PropertyDefinition property, bool get, bool set)
    {
        MethodDefinition accessor = property.GetMethod ?? property.SetMethod;
        var json = new Json();
        json.Str("name", property.Name).Flag("static", accessor.IsStatic).Str("type", TypeName(property.PropertyType))
            .Flag("get", get).Flag("set", set);
        json.Objects("params", Parameters(property.Parameters));
        return json.Close();
    }

    static List<string> Parameters(IList<ParameterDefinition> parameters)
    {
        // Parameter order is the signature: kept as declared, not sorted.
        var list = new List<string>();
        foreach (ParameterDefinition p in parameters)
        {
            var json = new Json();
            bool byRef = p.ParameterType.IsByReference;
            json.Str("name", p.Name).Str("type", TypeName(p.ParameterType))
                .Flag("optional", p.IsOptional || p.HasDefault || p.HasConstant)
                .Flag("params", HasAttribute(p, "System.ParamArrayAttribute"));
            if (byRef)
                json.Str("direction", p.IsOut && !p.IsIn ? "out" : "ref");
            list.Add(json.Close());
        }
        return list;
    }

    static bool HasAttribute(ICustomAttributeProvider provider, string attribute)
    {
        if (!provider.HasCustomAttributes)
            return false;
        foreach (CustomAttribute a in provider.CustomAttributes)
            if (a.AttributeType.FullName == attribute)
                return true;
        return false;
    }

    static string Signature(string name, IList<ParameterDefinition> parameters)
    {
        var s = new StringBuilder(name).Append('(');
        foreach (ParameterDefinition p in parameters)
            s.Append(TypeName(p.ParameterType)).Append(',');
        return s.Append(')').ToString();
    }

    static KeyValuePair<string, string> Keyed(string key, string json)
    {
        return new KeyValuePair<string, string>(key, json);
    }

    // Sorted by key (name and signature), ties by the JSON itself: the same input, the same bytes.
    static List<string> Ordered(List<KeyValuePair<string, string>> items)
    {
        items.Sort((a, b) =>
        {
            int c = string.CompareOrdinal(a.Key, b.Key);
            return c != 0 ? c : string.CompareOrdinal(a.Value, b.Value);
        });
        var values = new List<string>(items.Count);
        foreach (var item in items)
            values.Add(item.Value);
        return values;
    }

    // A generic instance named by its definition: IEnumerable`1<String> -> IEnumerable`1.
    static string DefinitionName(TypeReference type)
    {
        var instance = type as GenericInstanceType;
        return TypeName(instance != null ? instance.ElementType : type);
    }

    // Type.FullName's spelling, not Cecil's ('/' for nested, modifiers spelled out).
    static string TypeName(TypeReference type)
    {
        var instance = type as GenericInstanceType;
        if (instance != null)
        {
            var s = new StringBuilder(TypeName(instance.ElementType)).Append('<');
            for (int i = 0; i < instance.GenericArguments.Count; i++)
                s.Append(i == 0 ? "" : ",").Append(TypeName(instance.GenericArguments[i]));
            return s.Append('>').ToString();
        }
        var array = type as ArrayType;
        if (array != null)
            return TypeName(array.ElementType) + "[" + new string(',', array.Rank - 1) + "]";
        if (type is ByReferenceType)
            return TypeName(((TypeSpecification)type).ElementType) + "&";
        if (type is PointerType)
            return TypeName(((TypeSpecification)type).ElementType) + "*";
        // modreq/modopt (volatile, IsConst...) and pinned change nothing a caller sees.
        if (type is IModifierType || type is PinnedType || type is SentinelType)
            return TypeName(((TypeSpecification)type).ElementType);
        if (type is GenericParameter || type is FunctionPointerType)
            return type.Name;
        if (type.DeclaringType != null)
            return TypeName(type.DeclaringType) + "+" + type.Name;
        return string.IsNullOrEmpty(type.Namespace) ? type.Name : type.Namespace + "." + type.Name;
    }
}

// A JSON object written key by key; false flags and empty lists are left out.
class Json
{
    readonly StringBuilder text = new StringBuilder("{");

    Json Key(string key)
    {
        if (text.Length > 1)
            text.Append(',');
        Quote(key);
        text.Append(':');
        return this;
    }

    public Json Str(string key, string value)
    {
        Key(key).Quote(value);
        return this;
    }

    public Json Int(string key, int value)
    {
        Key(key).text.Append(value);
        return this;
    }

    public Json Flag(string key, bool value)
    {
        if (value)
            Key(key).text.Append("true");
        return this;
    }

    public Json StrList(string key, List<string> values)
    {
        if (values.Count == 0)
            return this;
        Key(key).text.Append('[');
        for (int i = 0; i < values.Count; i++)
        {
            if (i > 0)
                text.Append(',');
            Quote(values[i]);
        }
        text.Append(']');
        return this;
    }

    // JSON objects written already, in the order given.
    public Json Objects(string key, List<string> items, bool keepEmpty = false)
    {
        if (items.Count == 0 && !keepEmpty)
            return this;
        Key(key).text.Append('[');
        for (int i = 0; i < items.Count; i++)
            text.Append(i == 0 ? "" : ",").Append(items[i]);
        text.Append(']');
        return this;
    }

    Json Quote(string value)
    {
        text.Append('"');
        foreach (char c in value)
        {
            if (c == '"' || c == '\\')
                text.Append('\\').Append(c);
            else if (c < 0x20 || c > 0x7e)
                text.Append("\\u").Append(((int)c).ToString("x4"));
            else
                text.Append(c);
        }
        text.Append('"');
        return this;
    }

    public string Close()
    {
        return text.Append('}').ToString();
    }
}
